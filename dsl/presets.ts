import { attention, block, decoder, depth, ffn, norm, posenc } from "./combinators.js"
import type { DecoderSpec } from "./nodes.js"

export interface LlamaOptions {
  readonly vocab: number
  readonly width: number
  readonly context: number
  readonly layers: number
  readonly heads: number
  /** FFN width multiplier before the gated 2/3 reduction (llama: 4). */
  readonly mult?: number
  /** The exact FFN width (an imported model's hidden_dim); replaces `mult`. */
  readonly hidden?: number
  /** llama keeps the LM head separate from the embedding. */
  readonly tied?: boolean
}

/**
 * A llama-style decoder (Touvron et al. 2023): pre-norm blocks with RMSNorm (epsilon 1e-5, as
 * Llama 2 and llama2.c's run.c use), rotary positions, a SwiGLU FFN and no biases, and a
 * final RMSNorm. Composed from the ordinary combinators, so every part can still be
 * overridden or swept.
 */
export const llama = (o: LlamaOptions): DecoderSpec =>
  decoder({
    vocab: o.vocab,
    width: o.width,
    context: o.context,
    posenc: posenc("rope"),
    norm: norm("rms", { eps: 1e-5 }),
    tied: o.tied ?? false,
    layers: depth(
      o.layers,
      block({
        attention: attention("full", { heads: o.heads, bias: false }),
        ffn: ffn("swiglu", o.hidden !== undefined ? { hidden: o.hidden, bias: false } : { mult: o.mult ?? 4, bias: false }),
        norm: norm("rms", { eps: 1e-5 }),
      }),
    ),
  })

export interface Gpt2Options {
  readonly vocab: number
  readonly width: number
  readonly context: number
  readonly layers: number
  readonly heads: number
  /** GPT-2's is GELU's tanh approximation (the default); the research plan's base decoder uses ReLU. */
  readonly activation?: "relu" | "gelu" | "gelu-tanh"
  readonly tied?: boolean
}

/**
 * GPT-2's decoder (Radford et al. 2019): learned absolute positions, pre-LayerNorm blocks
 * of causal multi-head attention and a 4×-wide GELU-tanh FFN, biases, a final LayerNorm and
 * an LM head tied to the embedding. Without dropout (GPT-2 trained with 0.1).
 */
export const gpt2 = (o: Gpt2Options): DecoderSpec =>
  decoder({
    vocab: o.vocab,
    width: o.width,
    context: o.context,
    posenc: posenc("learned"),
    norm: norm("layer"),
    tied: o.tied ?? true,
    layers: depth(
      o.layers,
      block({ attention: attention("full", { heads: o.heads }), ffn: ffn(o.activation ?? "gelu-tanh", { mult: 4 }), norm: norm("layer") }),
    ),
  })
