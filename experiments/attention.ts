import { activation, attention, gpt2, replace, sweep } from "../dsl/index.js"
import { adamw, cosine, experiment, tinystories } from "../src/index.js"

/**
 * Research plan steps 4–5: fixed sparse (Child et al. 2019), sliding-window/Longformer
 * (Beltagy et al. 2020) and causal Linformer (Wang et al. 2020) attention against dense
 * attention, at a context where their patterns differ.
 */
const base = replace(gpt2({ vocab: 4096, width: 128, context: 512, layers: 4, heads: 4 }), { activation: () => activation("gelu") })
const heads = 4

export default experiment({
  description: "Attention kinds (dense, strided and fixed sparse, sliding window, Longformer, causal Linformer) at context 512, 2 seeds, 524 k tokens",
  models: sweep(base, {
    attention: [
      attention("full", { heads }),
      attention("sparse-strided", { heads, stride: 32 }),
      attention("sparse-fixed", { heads, stride: 64, summary: 8 }),
      attention("sliding-window", { heads, window: 64 }),
      attention("longformer", { heads, window: 64, global: [0] }),
      attention("linformer-causal", { heads, k: 64, block: 64 }),
    ],
  }),
  data: tinystories({ tokenizer: { bpe: 4096 } }),
  budget: { tokens: 524_288 },
  batch: 8,
  optimizer: adamw({ lr: cosine({ peak: 3e-3, warmup: 32, floor: 3e-4 }), weightDecay: 0.1 }),
  eval: { every: 250, tokens: 131_072 },
  checkpoint: { every: 100 },
  seeds: [1, 2],
})
