import type { Schema } from "effect"

/**
 * What every pluggable kind (attention, activation, norm, position scheme) says about itself,
 * apart from how it computes: its Schema (the spec's JSON shape), structural checks,
 * parameter shapes, FLOPs and label. The DSL, counts, printing and reports read only these;
 * the interpreter pairs each with its computation (src/model/kind.ts), keyed by the same tag.
 */

/** Model-wide sizes a kind may depend on. */
export interface Dims {
  readonly vocab: number
  readonly width: number
  readonly context: number
  /** Blocks in the model's stack. */
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
  /** A projection to the vocabulary (an untied LM head, exit heads): an output, not a hidden matrix (Muon leaves it to AdamW). */
  readonly output?: boolean
}

/** Parameter declarations keyed by name relative to the node that owns them. */
export type ParamDecls = Readonly<Record<string, ParamDecl>>

/** A structural problem, with the path relative to the node being checked. */
export interface Issue {
  readonly path: ReadonlyArray<string | number>
  readonly message: string
}

/** Whether query position i may attend to key position j, for head h. */
export type Visible = (head: number, i: number, j: number) => boolean

/** Common shape of a kind's description; `S` is the decoded spec of one node of that kind. */
export interface KindDescription<S> {
  readonly schema: Schema.Codec<S, any>
  readonly check?: (spec: S, dims: Dims) => ReadonlyArray<Issue>
  readonly params: (spec: S, dims: Dims) => ParamDecls
  /** Forward multiply-adds ×2 per token, excluding what parameters already account for. */
  readonly flops: (spec: S, dims: Dims) => number
  /** One short label for printing and variant names, e.g. "full(h=4)". */
  readonly label: (spec: S) => string
}

export interface AttentionDescription<S> extends KindDescription<S> {
  /** False when a position may see later tokens; the decoder refuses such kinds unless allowed. */
  readonly causal: (spec: S) => boolean
  /**
   * The pattern of the kind in block `layer`: which keys each query's output depends on
   * (compressed keys count as seen). The attention picture draws it; tests compare it with
   * what the computation actually does.
   */
  readonly visible: (spec: S, layer: number) => Visible
  /**
   * Set for kinds that can take their queries from some positions only, every position
   * supplying keys and values (src/attention's `attendRows`): the FLOPs per token of one
   * position's keys and values alone. Early exit's positions that have left compute only
   * these in later blocks (dsl/costs.ts keyValueSplit).
   */
  readonly keyValues?: (spec: S, dims: Dims) => number
}

export type NormDescription<S> = KindDescription<S>

export interface ActivationDescription<S> {
  readonly schema: Schema.Codec<S, any>
  readonly label: (spec: S) => string
  /** Gated activations take two inputs (value, gate) and need twice the input projection. */
  readonly gated: boolean
}

export interface PosencDescription<S> extends KindDescription<S> {
  /**
   * Options that depend on an attention layer's head count and head size (which live in the
   * attention node, not in Dims); the decoder's checks call this once per attention node.
   */
  readonly checkHeads?: (spec: S, heads: number, headDim: number) => ReadonlyArray<Issue>
  /** Longest sequence the scheme can represent; undefined when unbounded. */
  readonly maxLength?: (spec: S, dims: Dims) => number | undefined
}
