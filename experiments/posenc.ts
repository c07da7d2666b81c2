import { activation, gpt2, posenc, replace, sweep } from "../dsl/index.js"
import { adamw, cosine, experiment, tinystories } from "../src/index.js"

/**
 * Research plan step 2: which way of telling the model about position works best at a
 * fixed budget, and which ones still work on sequences twice as long as those trained on.
 */
const base = replace(gpt2({ vocab: 4096, width: 128, context: 256, layers: 4, heads: 4 }), { activation: () => activation("gelu") })

export default experiment({
  description: "Position schemes (none, learned, sinusoidal, RoPE, ALiBi, T5, xPos) at 1.3 M parameters, 2 seeds, 524 k tokens",
  models: sweep(base, {
    posenc: [posenc("none"), posenc("learned"), posenc("sinusoidal"), posenc("rope"), posenc("alibi"), posenc("t5", { heads: 4 }), posenc("xpos")],
  }),
  data: tinystories({ tokenizer: { bpe: 4096 } }),
  budget: { tokens: 524_288 },
  batch: 16,
  optimizer: adamw({ lr: cosine({ peak: 3e-3, warmup: 32, floor: 3e-4 }), weightDecay: 0.1 }),
  eval: { every: 250, tokens: 131_072, lengths: [512] },
  checkpoint: { every: 100 },
  seeds: [1, 2],
})
