import type * as tf from "@tensorflow/tfjs"
import type { Dims } from "../../dsl/kind.js"
import type { KvBuffer } from "../attention/kv-buffer.js"

/**
 * How each kind computes, in tfjs. What a kind is (schema, checks, parameter shapes, FLOPs,
 * label) is its description in dsl/kinds/; here is only its apply function, registered under
 * the same tag (src/attention/index.ts, src/posenc/index.ts, src/activation/index.ts,
 * src/norm/index.ts), typed so that a described kind without a computation does not compile.
 */

/**
 * A node's own parameters, looked up by the relative names its `params` declared. `probe`,
 * when a caller asked for it (ForwardOptions.probe), sees the input of each of the node's
 * matrix products, by the weight's relative name (pruning reads activations through it).
 */
export interface ParamView {
  (name: string): tf.Tensor
  readonly probe?: (weight: string, input: tf.Tensor2D) => void
}

/** Key/value cache of one attention layer during incremental decoding. */
export interface KvSlot {
  k?: KvBuffer
  v?: KvBuffer
  /**
   * A causal Linformer's compressed keys and values of the complete blocks so far, kept by
   * native decoding only (native/kernels.h LinformerInputs::state); it brings them up to date
   * from k and v, so tfjs steps in between need not.
   */
  compressed?: Float32Array
}

/**
 * What position schemes contribute inside attention. Schemes that act on the embeddings
 * leave these out; rotary and bias schemes fill them in.
 */
export interface PositionHooks {
  /** Rotates or otherwise transforms q and k ([B, H, T, dh]) whose first position is `offset`. */
  readonly queryKey?: (q: tf.Tensor4D, k: tf.Tensor4D, qOffset: number, kOffset: number) => [tf.Tensor4D, tf.Tensor4D]
  /** Additive score bias [H, Tq, Tk] for queries at qOffset.. and keys at kOffset... */
  readonly scoreBias?: (heads: number, tq: number, tk: number, qOffset: number, kOffset: number) => tf.Tensor3D
  /** Set when scoreBias is slopes[h]·(i − j) for query position i and key position j (ALiBi), so a fused kernel can add it in place. */
  readonly distanceSlopes?: (heads: number) => readonly number[]
  /**
   * Set when queryKey is a rotation of pairs (j, j + half) (RoPE, xPos): its tables for t
   * positions from `offset`, queries' and keys' ([qcos | qsin | kcos | ksin], each [t, dh]),
   * so a fused kernel can rotate in place.
   */
  readonly rotation?: (t: number, dh: number, offset: number) => { readonly half: number; readonly tables: Float32Array }
}

/** Everything a layer sees besides its parameters and input. */
export interface LayerCtx {
  readonly dims: Dims
  /** Index of the block in the stack. */
  readonly layer: number
  readonly training: boolean
  readonly position: PositionHooks
  /** Position of the first token of x in the sequence (non-zero when decoding with a cache). */
  readonly offset: number
  /** Present only during cached decoding. */
  readonly kv?: KvSlot
  /** Inverted dropout, identity outside training; seeded per call. */
  readonly dropout: (x: tf.Tensor, rate: number) => tf.Tensor
}

export interface AttentionCompute<S> {
  readonly apply: (p: ParamView, x: tf.Tensor3D, spec: S, ctx: LayerCtx) => tf.Tensor3D
  /**
   * For kinds whose description has `keyValues`: the outputs of the rows `rows` (ascending
   * indices s·L + i into x [S, L, D]) alone, every row of x supplying keys and values; each
   * query sees the keys of its own sequence up to its position. No cache.
   */
  readonly attendRows?: (p: ParamView, x: tf.Tensor3D, rows: ReadonlyArray<number>, spec: S, ctx: LayerCtx) => AttendedRows
}

export interface AttendedRows {
  /** [rows.length, D]. */
  readonly y: tf.Tensor2D
  /** Whether the other rows' queries attended too (a kernel over every row, their outputs dropped): they computed their scores as well as their keys and values. */
  readonly all: boolean
}

export interface NormCompute<S> {
  readonly apply: (p: ParamView, x: tf.Tensor, spec: S) => tf.Tensor
}

export interface ActivationCompute<S> {
  readonly apply: (spec: S, x: tf.Tensor, gate?: tf.Tensor) => tf.Tensor
  /** Set where the input projection can apply it in its matmul's epilogue instead (src/attention/projection.ts linear). */
  readonly epilogue?: "relu"
}

export interface PosencCompute<S> {
  /** Added to the token embeddings ([B, T, D], first position `offset`), if the scheme does that. */
  readonly embed?: (p: ParamView, x: tf.Tensor3D, spec: S, offset: number) => tf.Tensor3D
  /** Hooks into attention, if the scheme acts there. */
  readonly hooks?: (p: ParamView, spec: S, dims: Dims) => PositionHooks
}
