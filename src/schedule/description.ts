import type { Schema } from "effect"

/**
 * What a learning-rate schedule says about itself: its Schema (plain data in experiments and
 * spec.json, tagged by `_tag`), a label, and the rate at an update. A schedule is pure
 * arithmetic, so its computation is the `at` function beside its description.
 */
export interface ScheduleDescription<S> {
  readonly schema: Schema.Codec<S, any>
  readonly label: (schedule: S) => string
  /** The rate of update `step` (counted from 1) in a run of `totalSteps` updates. */
  readonly at: (schedule: S, step: number, totalSteps: number) => number
}
