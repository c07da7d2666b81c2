import type * as tf from "@tensorflow/tfjs"
import type { Schema } from "effect"

/**
 * The contract every pluggable kind (attention, activation, norm, position scheme) meets.
 * A kind is one module: its Schema (the spec's JSON shape), structural checks, parameter
 * shapes, FLOPs and its tfjs apply function. Registries list the modules; the DSL builds its
 * schemas from them and the interpreter dispatches through them.
 */

/** Model-wide sizes a kind may depend on. */
export interface Dims {
  readonly vocab: number
  readonly width: number
  readonly context: number
  readonly layers: number
}

export type Init =
  | { readonly kind: "normal"; readonly std: number }
  | { readonly kind: "zeros" }
  | { readonly kind: "ones" }

export interface ParamDecl {
  readonly shape: readonly number[]
  readonly init: Init
  /** AdamW decays matrices by default; gains, biases and embeddings are excluded. */
  readonly decay: boolean
  /** Counted as embedding parameters (token and position tables). */
  readonly embedding?: boolean
  /**
   * Applied along the sequence axis (Linformer's E and F) rather than once per token, so it
   * costs no 2 FLOPs per weight per token; the kind's own `flops` accounts for it.
   */
  readonly alongSequence?: boolean
}

/** Parameter declarations keyed by name relative to the node that owns them. */
export type ParamDecls = Readonly<Record<string, ParamDecl>>

/** A structural problem, with the path relative to the node being checked. */
export interface Issue {
  readonly path: ReadonlyArray<string | number>
  readonly message: string
}

/** A node's own parameters, looked up by the relative names its `params` declared. */
export type ParamView = (name: string) => tf.Tensor

/** Key/value cache of one attention layer during incremental decoding. */
export interface KvSlot {
  k?: tf.Tensor4D
  v?: tf.Tensor4D
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
}

/** Everything a layer sees besides its parameters and input. */
export interface LayerCtx {
  readonly dims: Dims
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

/** Common shape of a kind module; `S` is the decoded spec of one node of that kind. */
export interface KindModule<S> {
  readonly schema: Schema.Codec<S, any>
  readonly check?: (spec: S, dims: Dims) => ReadonlyArray<Issue>
  readonly params: (spec: S, dims: Dims) => ParamDecls
  /** Forward multiply-adds ×2 per token, excluding what parameters already account for. */
  readonly flops: (spec: S, dims: Dims) => number
  /** One short label for printing and variant names, e.g. "full(h=4)". */
  readonly label: (spec: S) => string
}

export interface AttentionKind<S> extends KindModule<S> {
  /** False when a position may see later tokens; the decoder refuses such kinds unless allowed. */
  readonly causal: (spec: S) => boolean
  readonly apply: (p: ParamView, x: tf.Tensor3D, spec: S, ctx: LayerCtx) => tf.Tensor3D
}

export interface NormKind<S> extends KindModule<S> {
  readonly apply: (p: ParamView, x: tf.Tensor, spec: S) => tf.Tensor
}

export interface ActivationKind<S> {
  readonly schema: Schema.Codec<S, any>
  readonly label: (spec: S) => string
  /** Gated activations take two inputs (value, gate) and need twice the input projection. */
  readonly gated: boolean
  readonly apply: (spec: S, x: tf.Tensor, gate?: tf.Tensor) => tf.Tensor
}

export interface PosencKind<S> extends KindModule<S> {
  /** Added to the token embeddings ([B, T, D], first position `offset`), if the scheme does that. */
  readonly embed?: (p: ParamView, x: tf.Tensor3D, spec: S, offset: number) => tf.Tensor3D
  /** Hooks into attention, if the scheme acts there. */
  readonly hooks?: (p: ParamView, spec: S, dims: Dims) => PositionHooks
  /**
   * Options that depend on an attention layer's head count (which lives in the attention
   * node, not in Dims); the decoder's checks call this once per attention node.
   */
  readonly checkHeads?: (spec: S, heads: number, width: number) => ReadonlyArray<Issue>
  /** Longest sequence the scheme can represent; undefined when unbounded. */
  readonly maxLength?: (spec: S, dims: Dims) => number | undefined
}
