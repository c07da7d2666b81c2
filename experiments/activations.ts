import { activation, gpt2, sweep } from "../dsl/index.js"
import { adamw, cosine, experiment, tinystories } from "../src/index.js"

/**
 * Research plan step 3: FFN activations at equal parameter count (the gated variants use
 * 2/3 of the hidden width, so every FFN has the same number of weights within 1%).
 */
const base = gpt2({ vocab: 4096, width: 128, context: 256, layers: 4, heads: 4 })

export default experiment({
  description: "FFN activations (ReLU, GELU, GELU-tanh, Swish, ReLU², SwiGLU, GEGLU, ReGLU) at 1.3 M parameters, 2 seeds, 524 k tokens",
  models: sweep(base, {
    activation: (["relu", "gelu", "gelu-tanh", "swish", "relu2", "swiglu", "geglu", "reglu"] as const).map((a) => activation(a)),
  }),
  data: tinystories({ tokenizer: { bpe: 4096 } }),
  budget: { tokens: 524_288 },
  batch: 16,
  optimizer: adamw({ lr: cosine({ peak: 3e-3, warmup: 32, floor: 3e-4 }), weightDecay: 0.1 }),
  eval: { every: 250, tokens: 131_072 },
  checkpoint: { every: 100 },
  seeds: [1, 2],
})
