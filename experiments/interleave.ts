import { activation, attention, gpt2, mapBlocks, replace, replaceIn } from "../dsl/index.js"
import { adamw, cosine, experiment, tinystories } from "../src/index.js"

/**
 * Heterogeneous stacks: dense attention in every block, a sliding window in every block, and
 * two interleavings at context 1024 — three windowed blocks to one dense block (the local :
 * global patterns of GPT-3's alternating layers and recent small models), and windows that
 * widen with depth (32, 64, 128, 256), as Longformer's autoregressive model does.
 */
const heads = 4
const window = (w: number) => attention("sliding-window", { heads, window: w })
const dense = replace(gpt2({ vocab: 4096, width: 128, context: 1024, layers: 4, heads }), { activation: () => activation("gelu") })

export default experiment({
  description: "Dense, sliding-window and interleaved attention stacks at context 1024, 2 seeds, 524 k tokens",
  models: {
    dense,
    sliding: replace(dense, { attention: () => window(64) }),
    "3local-1global": replace(dense, { attention: () => window(64) }, { blocks: (i) => i % 4 !== 3 }),
    widening: mapBlocks(dense, () => true, (b, i) => replaceIn(b, { attention: () => window(32 << i) })),
  },
  data: tinystories({ tokenizer: { bpe: 4096 } }),
  budget: { tokens: 524_288 },
  batch: 4,
  optimizer: adamw({ lr: cosine({ peak: 3e-3, warmup: 32, floor: 3e-4 }), weightDecay: 0.1 }),
  eval: { every: 250, tokens: 131_072 },
  checkpoint: { every: 32 },
  seeds: [1, 2],
})
