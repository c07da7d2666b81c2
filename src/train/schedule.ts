/**
 * Learning-rate schedules as plain data (so experiments and spec.json carry them) with their
 * Effect Schema, and `lrAt` to evaluate one at an update.
 */
import { Schema } from "effect"

const NonNegative = Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0))
const Positive = Schema.Finite.check(Schema.isGreaterThan(0))

export const ConstantSchedule = Schema.TaggedStruct("constant", { lr: Positive })

/** Linear warmup from 0 to `peak` over `warmup` updates, then cosine decay to `floor` at the last update. */
export const CosineSchedule = Schema.TaggedStruct("cosine", {
  peak: Positive,
  warmup: Schema.Int.check(Schema.isGreaterThanOrEqualTo(0)),
  floor: NonNegative,
}).check(Schema.makeFilter((s) => s.floor <= s.peak || `floor ${s.floor} exceeds peak ${s.peak}`))

export const LrSchedule = Schema.Union([ConstantSchedule, CosineSchedule])
export type LrSchedule = typeof LrSchedule.Type

const decodeSchedule = Schema.decodeUnknownSync(LrSchedule)

/** A constant learning rate; throws a SchemaError for a non-positive or non-finite `lr`. */
export const constant = (lr: number): LrSchedule => decodeSchedule({ _tag: "constant", lr })

/** Warmup + cosine decay; throws a SchemaError for invalid values. */
export const cosine = (options: { readonly peak: number; readonly warmup: number; readonly floor: number }): LrSchedule =>
  decodeSchedule({ _tag: "cosine", ...options })

/**
 * The learning rate of update number `step`, counted from 1 (the optimiser's step count after
 * the update), in a run of `totalSteps` updates. For cosine: `peak·step/warmup` while
 * `step < warmup`, `peak` at `step = warmup`, `floor` from `step = totalSteps` on.
 */
export const lrAt = (schedule: LrSchedule, step: number, totalSteps: number): number => {
  if (!(Number.isInteger(step) && step >= 0)) throw new Error(`lrAt: step must be an integer >= 0, got ${step}`)
  if (!(Number.isInteger(totalSteps) && totalSteps >= 1)) {
    throw new Error(`lrAt: totalSteps must be an integer >= 1, got ${totalSteps}`)
  }
  switch (schedule._tag) {
    case "constant":
      return schedule.lr
    case "cosine": {
      const { peak, warmup, floor } = schedule
      if (step < warmup) return (peak * step) / warmup
      if (step >= totalSteps) return floor
      const progress = (step - warmup) / (totalSteps - warmup)
      return floor + (peak - floor) * 0.5 * (1 + Math.cos(Math.PI * progress))
    }
  }
}
