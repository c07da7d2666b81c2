import { Schema } from "effect"
import type { NamedParam } from "../../../../dsl/params.js"
import { LrSchedule } from "../../../schedule/index.js"

/**
 * What an optimiser says about itself, apart from how it computes (src/optimizer/compute/):
 * its Schema (plain data in experiments and spec.json; every change of it changes the run's
 * identity) and a label.
 */
export interface OptimizerDescription<O> {
  readonly schema: Schema.Codec<O, any>
  readonly label: (optimizer: O) => string
  /** Its state beside the weights, for the memory estimate: float32 values per weight (at most) and what they are. */
  readonly state: (optimizer: O) => { readonly perWeight: number; readonly what: string }
  /**
   * FLOPs of one update of `params`, counted as the model's are (2 per multiply-add of a matrix
   * product; elementwise work is not counted): Muon's Newton–Schulz products, 0 for optimisers
   * that are elementwise. A run's FLOPs to a target add them to the model's.
   */
  readonly updateFlops: (optimizer: O, params: ReadonlyArray<NamedParam>) => number
}

/** Fields every optimiser has: the learning-rate schedule, gradient clipping, and which parameters decay. */
export const commonFields = {
  lr: LrSchedule,
  weightDecay: Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0)),
  /** Global gradient-norm clip; 0 disables it. */
  clip: Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0)),
  /** Decay embeddings, norm gains and biases too (off by default, as in GPT-2/nanoGPT). */
  decayAll: Schema.Boolean,
}
