import type * as tf from "@tensorflow/tfjs"
import type { NamedParam } from "../../../dsl/params.js"
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

/** What an optimiser may know of the run besides its parameters' values. */
export interface OptimizerContext {
  /** Whether a parameter receives weight decay. */
  readonly decays: (name: string) => boolean
  /** A parameter's declaration: its shape and role (embedding, output head, …). */
  readonly param: (name: string) => NamedParam
  /** The run's number of updates, for a schedule an optimiser keeps of its own. */
  readonly totalSteps: number
}

/** Builds the optimiser of `params`. */
export type OptimizerCompute<O> = (options: O, params: Record<string, tf.Variable>, context: OptimizerContext) => Optimizer
