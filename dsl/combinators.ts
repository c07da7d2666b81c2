import { type FfnOptions, type FfnSpec, makeFfn } from "./ffn.js"
import { activation, type ActivationSpec, type ActivationTag } from "./kinds/activation/index.js"
import { norm as makeNorm, type NormSpec } from "./kinds/norm/index.js"
import { posenc as makePosenc, type PosencSpec } from "./kinds/posenc/index.js"
import type { BlockSpec, DecoderSpec, DepthSpec, Layer, Layers, ResidualSpec, StackSpec } from "./nodes.js"

export { attention } from "./kinds/attention/index.js"
export { activation } from "./kinds/activation/index.js"
export { norm } from "./kinds/norm/index.js"
export { posenc } from "./kinds/posenc/index.js"

/** Plain data all the way down: freezing catches accidental mutation of a shared spec. */
export const freeze = <T>(value: T): T => {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) freeze(v)
    Object.freeze(value)
  }
  return value
}

/** `ffn("gelu", { mult: 4 })` or `ffn("gelu", { hidden: 768 })`: the activation by tag, or a full activation spec. */
export const ffn = (act: ActivationTag | ActivationSpec, options: FfnOptions = {}): FfnSpec =>
  freeze(makeFfn(typeof act === "string" ? (activation as (k: ActivationTag) => ActivationSpec)(act) : act, options))

/** x + dropout(body(x)). */
export const residual = (body: ReadonlyArray<Layer>, options: { dropout?: number } = {}): ResidualSpec =>
  freeze({ op: "residual", body, dropout: options.dropout ?? 0 })

export interface PreNormBlock {
  readonly attention: Layer
  readonly ffn: Layer
  readonly norm?: NormSpec
  readonly dropout?: number
}

/**
 * A transformer block. Given its parts it is the pre-norm block of GPT-2:
 * x + attention(norm(x)), then x + ffn(norm(x)). Given a list it is those layers in order,
 * so other arrangements (post-norm, parallel-free variants) are spelled out explicitly.
 */
export const block = (parts: PreNormBlock | ReadonlyArray<Layer>): BlockSpec => {
  if (Array.isArray(parts)) return freeze({ op: "block", layers: parts as ReadonlyArray<Layer> })
  const p = parts as PreNormBlock
  const n = p.norm ?? makeNorm("layer")
  const dropout = p.dropout ?? 0
  return freeze({
    op: "block",
    layers: [residual([n, p.attention], { dropout }), residual([n, p.ffn], { dropout })],
  })
}

/** The same block repeated n times, each with its own parameters. */
export const depth = (n: number, b: BlockSpec): DepthSpec => freeze({ op: "depth", n, block: b })

/** Blocks that may differ (heads, sizes, kinds), in order; parameters are named by position as in `depth`. */
export const stack = (blocks: ReadonlyArray<BlockSpec>): StackSpec => freeze({ op: "stack", blocks: [...blocks] })

/**
 * n blocks repeating a pattern: `interleave(8, [local, local, local, global])` is two rounds of
 * three local blocks and a global one. The pattern's length need not divide n.
 */
export const interleave = (n: number, pattern: ReadonlyArray<BlockSpec>): StackSpec => {
  if (pattern.length === 0) throw new Error("interleave: the pattern has no blocks")
  return stack(Array.from({ length: n }, (_, i) => pattern[i % pattern.length]!))
}

export interface DecoderOptions {
  readonly vocab: number
  readonly width: number
  readonly context: number
  readonly layers: Layers
  readonly posenc?: PosencSpec
  readonly norm?: NormSpec
  readonly tied?: boolean
  readonly dropout?: number
  /** Permits a non-causal attention kind (e.g. the published Linformer) in this language model. */
  readonly allowNonCausal?: boolean
}

/** A decoder-only language model: embed → positions → layers → norm → LM head. */
export const decoder = (o: DecoderOptions): DecoderSpec =>
  freeze({
    op: "decoder",
    vocab: o.vocab,
    width: o.width,
    context: o.context,
    posenc: o.posenc ?? makePosenc("learned"),
    layers: o.layers,
    norm: o.norm ?? makeNorm("layer"),
    tied: o.tied ?? true,
    dropout: o.dropout ?? 0,
    ...(o.allowNonCausal ? { allowNonCausal: true } : {}),
  })
