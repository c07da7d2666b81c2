import { Schema } from "effect"
import type { ScheduleDescription } from "./description.js"

/** Linear warmup from 0 to `peak` over `warmup` updates, then cosine decay to `floor` at the last update. */
const schema = Schema.TaggedStruct("cosine", {
  peak: Schema.Finite.check(Schema.isGreaterThan(0)),
  warmup: Schema.Int.check(Schema.isGreaterThanOrEqualTo(0)),
  floor: Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0)),
}).check(Schema.makeFilter((s) => s.floor <= s.peak || `floor ${s.floor} exceeds peak ${s.peak}`))
export type Cosine = typeof schema.Type

export const cosineSchedule: ScheduleDescription<Cosine> = {
  schema,
  label: (s) => `cosine ${s.peak} → ${s.floor}, warmup ${s.warmup}`,
  /** `peak·step/warmup` while `step < warmup`, `peak` at `step = warmup`, `floor` from `step = totalSteps` on. */
  at: ({ peak, warmup, floor }, step, totalSteps) => {
    if (step < warmup) return (peak * step) / warmup
    if (step >= totalSteps) return floor
    const progress = (step - warmup) / (totalSteps - warmup)
    return floor + (peak - floor) * 0.5 * (1 + Math.cos(Math.PI * progress))
  },
}
