import type { DecoderSpec } from "../../../dsl/nodes.js"
import type { HostBatch } from "../../eval/evaluate.js"
import type { Model, ParamValues } from "../../model/compile.js"
import type { TensorArrays } from "../../train/checkpoint.js"

/**
 * How a pruning method computes: from the source model and weights (and, for methods that
 * measure activations or gradients, calibration batches) to the pruned model, its first
 * weights and, for unstructured methods, the masks that hold the removed weights at zero.
 */
export interface PruneInput {
  /** The source, compiled. */
  readonly model: Model
  /** Its weights as tensors, and the same as arrays. */
  readonly params: ParamValues
  readonly weights: TensorArrays
  /** `n` seeded training batches (never validation data) for scores. */
  readonly calibration: (n: number) => ReadonlyArray<HostBatch>
  /** The pruned run's seed: random baselines draw from it. */
  readonly seed: number
  /** Optimiser steps of the fine-tune (0: one-shot). */
  readonly steps: number
}

export interface PrunedMasks {
  /** 1 keeps a weight, 0 holds it at zero; for the prunable matrices. */
  readonly initial: TensorArrays
  /** New masks after optimiser step `step`, when they change then (gradual pruning), from the current weights. */
  readonly remask?: (step: number, weights: () => TensorArrays) => TensorArrays | undefined
}

export interface Pruned {
  readonly model: DecoderSpec
  readonly params: TensorArrays
  readonly masks?: PrunedMasks
  /** What was removed, for summary.json (e.g. the heads each layer kept). */
  readonly details: Readonly<Record<string, unknown>>
}

export type PruneCompute<M> = (method: M, input: PruneInput) => Pruned

/** The weights with masks applied (removed entries set to +0). */
export const applyMasks = (weights: TensorArrays, masks: TensorArrays): TensorArrays =>
  Object.fromEntries(
    Object.entries(weights).map(([name, w]) => {
      const m = masks[name]
      return [name, m === undefined ? w : { shape: w.shape, data: w.data.map((x, i) => (m.data[i] === 0 ? 0 : x)) }]
    }),
  )
