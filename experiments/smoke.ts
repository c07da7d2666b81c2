import { attention, block, decoder, depth, ffn } from "../dsl/index.js"
import { adamw, cosine, experiment, tinystories } from "../src/index.js"

/** A minute-long end-to-end check of the whole pipeline on a tiny model. */
export default experiment({
  description: "Tiny model, 60 steps: checks data, training, checkpoints and sampling end to end",
  models: decoder({
    vocab: 512,
    width: 32,
    context: 32,
    layers: depth(2, block({ attention: attention("full", { heads: 2 }), ffn: ffn("gelu") })),
  }),
  data: tinystories({ tokenizer: { bpe: 512 } }),
  budget: { steps: 60 },
  batch: 8,
  optimizer: adamw({ lr: cosine({ peak: 3e-3, warmup: 10, floor: 3e-4 }) }),
  eval: { every: 30, tokens: 4096 },
  checkpoint: { every: 20 },
  sample: { tokens: 24 },
  seeds: [1],
})
