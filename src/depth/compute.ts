import type * as tf from "@tensorflow/tfjs"
import type { DepthCosts } from "../../dsl/costs.js"
import type { DecoderSpec } from "../../dsl/nodes.js"
import type { DecodeCache } from "../model/compile.js"
import type { AttendedRows } from "../model/kind.js"
import type { DepthTrace } from "./trace.js"

/**
 * How a depth policy computes: it runs the blocks of one forward pass, choosing which
 * positions go through which, through the hooks the interpreter gives it; what a policy is
 * (schema, checks, parameters) is its description in dsl/kinds/depth/.
 */
export interface DepthContext {
  readonly spec: DecoderSpec
  readonly costs: DepthCosts
  readonly training: boolean
  /** This call's dropout seed (a pure function of run seed, step and micro-batch in training). */
  readonly seed: number
  /** Position of the first input token in the sequence (non-zero when decoding with a cache). */
  readonly offset: number
  readonly cache?: DecodeCache
  readonly trace?: DepthTrace
  /** Layers [from, to) of block i on x [B, T, D], its positions counted from `at` (default: offset). */
  readonly run: (i: number, x: tf.Tensor3D, from?: number, to?: number, at?: number) => tf.Tensor3D
  /**
   * Block i on x [S, L, D] for the rows `rows` of its S·L alone (ascending), the others
   * supplying keys and values (`all`: their queries attended too): [rows.length, D]. For
   * blocks whose costs have `keyValues`, without a cache.
   */
  readonly runRows: (i: number, x: tf.Tensor3D, rows: ReadonlyArray<number>) => AttendedRows
  /** The decoder's final norm: [B, T, D] → [B·T, D]. */
  readonly finalNorm: (x: tf.Tensor3D) => tf.Tensor2D
  /** The LM head: [N, D] → [N, V], its logits soft-capped when the decoder caps them. */
  readonly lmHead: (h: tf.Tensor2D) => tf.Tensor2D
  /** The decoder's logit soft-cap (the identity when it has none), for heads of a policy's own. */
  readonly capLogits: (logits: tf.Tensor2D) => tf.Tensor2D
  /** A parameter of block i by its name relative to the block (`router.weight`). */
  readonly param: (block: number, name: string) => tf.Tensor
}

/** One output the training objective weighs: its loss (cross-entropy, or distillation) of `logits`, times `weight`. */
export interface WeightedOutput {
  readonly logits: tf.Tensor3D
  readonly weight: number
}

export interface DepthOutput {
  /** What the model predicts with, [B, T, V]. */
  readonly logits: tf.Tensor3D
  /** In training, when the policy's objective is not the logits' loss alone: Σ wᵢ·lossᵢ / Σ wᵢ + aux. */
  readonly objective?: { readonly outputs: ReadonlyArray<WeightedOutput>; readonly aux?: tf.Scalar }
}

export interface DepthCompute<P> {
  readonly forward: (policy: P, x: tf.Tensor3D, ctx: DepthContext) => DepthOutput
}
