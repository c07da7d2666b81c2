import { Schema } from "effect"
import type { SpecOf } from "../../dsl/registry.js"
import { constantSchedule } from "./constant.js"
import { cosineSchedule } from "./cosine.js"
import type { ScheduleDescription } from "./description.js"
import { linearSchedule } from "./linear.js"
import { wsdSchedule } from "./wsd.js"

/**
 * The learning-rate schedules, by tag. Adding one is its module (schema, label, rate) and one
 * line here; experiments build them with the combinators below.
 */
export const schedules = {
  constant: constantSchedule,
  cosine: cosineSchedule,
  linear: linearSchedule,
  wsd: wsdSchedule,
} as const

export type LrSchedule = SpecOf<typeof schedules>
export const LrSchedule = Schema.Union(Object.values(schedules).map((s) => s.schema) as [
  typeof constantSchedule.schema,
  typeof cosineSchedule.schema,
  typeof linearSchedule.schema,
  typeof wsdSchedule.schema,
])

const scheduleModule = (s: LrSchedule) => schedules[s._tag] as ScheduleDescription<LrSchedule>

const decodeSchedule = Schema.decodeUnknownSync(LrSchedule)

/** A constant learning rate; throws a SchemaError for a non-positive or non-finite `lr`. */
export const constant = (lr: number): LrSchedule => decodeSchedule({ _tag: "constant", lr })

/** Warmup + cosine decay; throws a SchemaError for invalid values. */
export const cosine = (options: { readonly peak: number; readonly warmup: number; readonly floor: number }): LrSchedule => decodeSchedule({ _tag: "cosine", ...options })

/** Warmup + linear decay to `floor` (0 allowed) at the last update; throws a SchemaError for invalid values. */
export const linear = (options: { readonly peak: number; readonly warmup: number; readonly floor: number }): LrSchedule => decodeSchedule({ _tag: "linear", ...options })

/** Warmup, stable at `peak`, linear decay to `floor` over the last `decay` fraction of the run; throws a SchemaError for invalid values. */
export const wsd = (options: { readonly peak: number; readonly warmup: number; readonly decay: number; readonly floor: number }): LrSchedule => decodeSchedule({ _tag: "wsd", ...options })

export const describeSchedule = (s: LrSchedule): string => scheduleModule(s).label(s)

/**
 * The learning rate of update number `step`, counted from 1 (the optimiser's step count after
 * the update), in a run of `totalSteps` updates.
 */
export const lrAt = (schedule: LrSchedule, step: number, totalSteps: number): number => {
  if (!(Number.isInteger(step) && step >= 0)) throw new Error(`lrAt: step must be an integer >= 0, got ${step}`)
  if (!(Number.isInteger(totalSteps) && totalSteps >= 1)) throw new Error(`lrAt: totalSteps must be an integer >= 1, got ${totalSteps}`)
  return scheduleModule(schedule).at(schedule, step, totalSteps)
}
