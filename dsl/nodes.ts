import type { FfnSpec } from "./ffn.js"
import type { Dims } from "./kind.js"
import type { AttentionSpec } from "./kinds/attention/index.js"
import type { DepthPolicy } from "./kinds/depth/index.js"
import type { NormSpec } from "./kinds/norm/index.js"
import type { PosencSpec } from "./kinds/posenc/index.js"

/**
 * The structural nodes of a model expression. Leaves (attention, ffn, norm, posenc) come
 * from the kind registries; these nodes arrange them: a residual adds its body's output to
 * its input, a block applies its layers in order, a stack applies its blocks in order (each
 * with its own kinds, sizes and parameters), depth is the short form of n equal blocks (either
 * may carry a depth policy: which blocks each token goes through), and the decoder wraps embeddings, position scheme, the blocks, a final norm and the LM head.
 * Decoding and checking them is dsl/decode.ts, the one place a spec is validated.
 */
export type Layer = AttentionSpec | FfnSpec | NormSpec | ResidualSpec

export interface ResidualSpec {
  readonly op: "residual"
  readonly body: ReadonlyArray<Layer>
  /** Dropout on the branch output before it is added back (GPT-2's resid_pdrop). */
  readonly dropout: number
}

export interface BlockSpec {
  readonly op: "block"
  readonly layers: ReadonlyArray<Layer>
}

/** n copies of one block, each with its own parameters. */
export interface DepthSpec {
  readonly op: "depth"
  readonly n: number
  readonly block: BlockSpec
  /** Absent: every token goes through every block. */
  readonly policy?: DepthPolicy
}

/** Blocks that may differ, in order. */
export interface StackSpec {
  readonly op: "stack"
  readonly blocks: ReadonlyArray<BlockSpec>
  readonly policy?: DepthPolicy
}

export type Layers = DepthSpec | StackSpec

export interface DecoderSpec {
  readonly op: "decoder"
  readonly vocab: number
  readonly width: number
  readonly context: number
  readonly posenc: PosencSpec
  readonly layers: Layers
  readonly norm: NormSpec
  /** LM head shares the token embedding matrix (Press & Wolf 2017). */
  readonly tied: boolean
  /** Dropout on the embeddings. */
  readonly dropout: number
  /** Permits attention kinds that let a position see later tokens (absent: refused). */
  readonly allowNonCausal?: boolean
  /**
   * "blocks": training keeps only each block's input and recomputes the block's forward pass
   * in the backward pass (activation checkpointing): less memory for one more forward pass.
   * The model computes the same function either way. Absent: every activation is kept.
   */
  readonly checkpoint?: "blocks"
  /** Logit soft-cap c (Gemma 2): the head's logits are c·tanh(logits / c). Absent: uncapped. */
  readonly softcap?: number
}

/** The blocks of a stack or of a depth node, in order. */
export const blocksOf = (layers: Layers): ReadonlyArray<BlockSpec> =>
  layers.op === "depth" ? Array.from({ length: layers.n }, () => layers.block) : layers.blocks

/** The model-wide sizes the kinds see. */
export const dimsOf = (spec: DecoderSpec): Dims => ({
  vocab: spec.vocab,
  width: spec.width,
  context: spec.context,
  layers: spec.layers.op === "depth" ? spec.layers.n : spec.layers.blocks.length,
})
