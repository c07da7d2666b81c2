import { type FfnOptions, type FfnSpec, makeFfn } from "./ffn.js"
import { activation, type ActivationSpec, type ActivationTag } from "./kinds/activation/index.js"
import { norm as makeNorm, type NormSpec } from "./kinds/norm/index.js"
import { posenc as makePosenc, type PosencSpec } from "./kinds/posenc/index.js"
import type { BlockSpec, DecoderSpec, DepthSpec, Layer, Layers, ResidualSpec, StackSpec } from "./nodes.js"
import type { DepthPolicy } from "./kinds/depth/index.js"
import { earlyExitPolicy, type EarlyExitOptions } from "./kinds/depth/early-exit.js"
import { layerDropPolicy } from "./kinds/depth/layer-drop.js"
import { mixtureOfDepthsPolicy, type MixtureOfDepthsOptions } from "./kinds/depth/mixture-of-depths.js"

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

/** The same block repeated n times, each with its own parameters; a depth policy, if given, decides which blocks each token runs. */
export const depth = (n: number, b: BlockSpec, policy?: DepthPolicy): DepthSpec => freeze({ op: "depth", n, block: b, ...(policy ? { policy } : {}) })

/** Blocks that may differ (heads, sizes, kinds), in order; parameters are named by position as in `depth`. */
export const stack = (blocks: ReadonlyArray<BlockSpec>, policy?: DepthPolicy): StackSpec =>
  freeze({ op: "stack", blocks: [...blocks], ...(policy ? { policy } : {}) })

/** `depth(6, b, layerDrop({ rate: 0.2 }))`: each block skipped with probability `rate` in training (Fan et al. 2019). */
export const layerDrop = (o: { rate: number }): DepthPolicy => freeze(layerDropPolicy.make(o))

/** `depth(6, b, earlyExit({ threshold: 0.9 }))`: a token leaves after the first block confident enough (CALM). */
export const earlyExit = (o: EarlyExitOptions = {}): DepthPolicy => freeze(earlyExitPolicy.make(o))

/** `depth(6, b, mixtureOfDepths({ capacity: 0.125, every: 2 }))`: routed blocks process a fraction of the tokens (Raposo et al. 2024). */
export const mixtureOfDepths = (o: MixtureOfDepthsOptions): DepthPolicy => freeze(mixtureOfDepthsPolicy.make(o))

/**
 * n blocks repeating a pattern: `interleave(8, [local, local, local, global])` is two rounds of
 * three local blocks and a global one. The pattern's length need not divide n.
 */
export const interleave = (n: number, pattern: ReadonlyArray<BlockSpec>, policy?: DepthPolicy): StackSpec => {
  if (pattern.length === 0) throw new Error("interleave: the pattern has no blocks")
  return stack(Array.from({ length: n }, (_, i) => pattern[i % pattern.length]!), policy)
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
  /** "blocks": recompute each block's forward pass in training's backward pass instead of keeping its activations. */
  readonly checkpoint?: "blocks"
  /** Soft-caps the logits at ±c: c·tanh(logits / c) (Gemma 2, modded-nanogpt). */
  readonly softcap?: number
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
    ...(o.checkpoint ? { checkpoint: o.checkpoint } : {}),
    ...(o.softcap === undefined ? {} : { softcap: o.softcap }),
  })
