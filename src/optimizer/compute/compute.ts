import type * as tf from "@tensorflow/tfjs"
import type { TensorArrays } from "../../train/checkpoint.js"

/**
 * An optimiser as the training step uses it, the one interface every optimiser's computation
 * gives: an update with the step's learning rate, and its state as plain arrays for
 * checkpoints (importing it restores the optimiser bit for bit).
 */
export interface OptimizerState {
  readonly step: number
  readonly moments: TensorArrays
}

export interface Optimizer {
  readonly step: number
  update(grads: Record<string, tf.Tensor>, lr: number): void
  exportState(): OptimizerState
  importState(state: OptimizerState): void
  dispose(): void
}

/** Builds the optimiser of `params`; `decay` says which parameters receive weight decay. */
export type OptimizerCompute<O> = (options: O, params: Record<string, tf.Variable>, decay: (name: string) => boolean) => Optimizer
