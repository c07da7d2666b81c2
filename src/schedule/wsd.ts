import { Schema } from "effect"
import type { ScheduleDescription } from "./description.js"

/**
 * Warmup-stable-decay (trapezoidal; Hägele et al. 2024, "Scaling Laws and Compute-Optimal
 * Training Beyond Fixed Training Durations"): linear warmup from 0 to `peak` over `warmup`
 * updates, `peak`, then linear decay to `floor` over the last `decay` fraction of the run.
 */
const schema = Schema.TaggedStruct("wsd", {
  peak: Schema.Finite.check(Schema.isGreaterThan(0)),
  warmup: Schema.Int.check(Schema.isGreaterThanOrEqualTo(0)),
  /** The decay phase's share of the run's updates: (0, 1]. */
  decay: Schema.Finite.check(Schema.isBetween({ minimum: 0, maximum: 1, exclusiveMinimum: true })),
  floor: Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0)),
}).check(Schema.makeFilter((s) => s.floor <= s.peak || `floor ${s.floor} exceeds peak ${s.peak}`))
export type Wsd = typeof schema.Type

export const wsdSchedule: ScheduleDescription<Wsd> = {
  schema,
  label: (s) => `wsd ${s.peak} → ${s.floor}, warmup ${s.warmup}, decay ${s.decay}`,
  /**
   * The lower of the warmup line (`peak·step/warmup`), `peak`, and the decay line, which falls
   * from `peak` at `step = totalSteps·(1 − decay)` to `floor` at `step = totalSteps`; `floor`
   * from `totalSteps` on. A warmup that runs into the decay meets it where the lines cross.
   */
  at: ({ peak, warmup, decay, floor }, step, totalSteps) => {
    if (step >= totalSteps) return floor
    const decaying = floor + ((peak - floor) * (totalSteps - step)) / (decay * totalSteps)
    return Math.min(step < warmup ? (peak * step) / warmup : peak, peak, decaying)
  },
}
