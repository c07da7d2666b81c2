import { attention, block, decoder, depth, ffn, norm, posenc } from "../dsl/index.js"
import { adamw, cosine, experiment, tinystories } from "../src/index.js"

/**
 * Research plan step 1: the base decoder. GPT-2's architecture at 4 M parameters: learned
 * absolute positions, pre-LayerNorm blocks of causal multi-head attention and a 4×-wide
 * ReLU FFN, tied LM head.
 */
export const baseModel = decoder({
  vocab: 4096,
  width: 256,
  context: 256,
  posenc: posenc("learned"),
  layers: depth(4, block({ attention: attention("full", { heads: 4 }), ffn: ffn("relu", { mult: 4 }), norm: norm("layer") })),
  norm: norm("layer"),
  tied: true,
})

export default experiment({
  description: "Base decoder (GPT-2 style, 4.3 M params) on TinyStories",
  models: baseModel,
  data: tinystories({ tokenizer: { bpe: 4096 } }),
  budget: { tokens: 4_000_000 },
  batch: 16,
  optimizer: adamw({ lr: cosine({ peak: 2e-3, warmup: 50, floor: 2e-4 }), weightDecay: 0.1, clip: 1 }),
  eval: { every: 250, tokens: 131_072 },
  checkpoint: { every: 100 },
  seeds: [1],
})
