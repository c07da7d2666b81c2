import * as tf from "@tensorflow/tfjs"
import type { NamedParam } from "../../../dsl/params.js"
import type { RunSpec } from "../../experiment/define.js"
import type { Batch, ForwardOptions, Model, ParamValues } from "../../model/compile.js"
import type { SourceRun } from "../../train/sources.js"

/**
 * An objective as the training step uses it, the one interface every objective's computation
 * gives. `guide` computes what the loss needs besides the batch outside the gradient tape (a
 * teacher's forward pass, whose intermediates are freed as soon as its logits and chosen block
 * outputs exist, and which no gradient reaches). `loss` receives the whole forward through
 * `Model.loss`, which folds in a depth policy's objective. `params` are the objective's own
 * trainable tensors (hidden-state projections): trained, saved in the checkpoint next to the
 * model's, but not part of the model.
 */
export interface Guide {
  readonly logits: tf.Tensor2D
  /** The teacher block outputs of the hidden-state pairs, in pair order. */
  readonly hidden: ReadonlyArray<tf.Tensor3D>
}

export interface TrainingObjective {
  readonly params: Readonly<Record<string, tf.Variable>>
  readonly table: ReadonlyArray<NamedParam>
  readonly guide: (batch: Batch) => Guide | undefined
  readonly loss: (params: ParamValues, batch: Batch, guide: Guide | undefined, options: ForwardOptions) => tf.Scalar
  readonly dispose: () => void
}

/** What an objective's computation is given: the run, its compiled model, and the runs its description's `sources` named, opened, in that order. */
export interface ObjectiveInput {
  readonly run: RunSpec
  readonly model: Model
  readonly sources: ReadonlyArray<SourceRun>
}

export type ObjectiveCompute<O> = (objective: O, input: ObjectiveInput) => TrainingObjective

export const inputsOf = (batch: Batch): tf.Tensor2D => {
  const [b, t1] = batch.tokens.shape
  return tf.slice(batch.tokens, [0, 0], [b, t1 - 1])
}

/** Parameter-name prefix of the objective's own tensors. */
export const OBJECTIVE_PREFIX = "objective."
