import { Schema } from "effect"
import type { ScheduleDescription } from "./description.js"

/** Linear warmup from 0 to `peak` over `warmup` updates, then linear decay to `floor` at the last update (0 decays to zero). */
const schema = Schema.TaggedStruct("linear", {
  peak: Schema.Finite.check(Schema.isGreaterThan(0)),
  warmup: Schema.Int.check(Schema.isGreaterThanOrEqualTo(0)),
  floor: Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0)),
}).check(Schema.makeFilter((s) => s.floor <= s.peak || `floor ${s.floor} exceeds peak ${s.peak}`))
export type Linear = typeof schema.Type

export const linearSchedule: ScheduleDescription<Linear> = {
  schema,
  label: (s) => `linear ${s.peak} → ${s.floor}, warmup ${s.warmup}`,
  /** `peak·step/warmup` while `step < warmup`, `peak` at `step = warmup`, `floor` from `step = totalSteps` on. */
  at: ({ peak, warmup, floor }, step, totalSteps) => {
    if (step < warmup) return (peak * step) / warmup
    if (step >= totalSteps) return floor
    return floor + ((peak - floor) * (totalSteps - step)) / (totalSteps - warmup)
  },
}
