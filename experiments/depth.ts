import { activation, earlyExit, gpt2, layerDrop, mixtureOfDepths, replace, withPolicy } from "../dsl/index.js"
import { adamw, cosine, experiment, tinystories } from "../src/index.js"

/**
 * Research plan step 8: dynamic depth. A 6-block decoder trained plainly, with LayerDrop
 * (then pruned to every other block by `npm run depth`, against the plain model pruned the
 * same way and a 3-block model trained as such), with early exits (swept over thresholds by
 * `npm run depth`), and with mixture-of-depths at capacities 12.5 % and 50 %. The
 * mixture-of-depths models are deeper so that their training FLOPs per token match the dense
 * model's (Raposo et al. compare at equal FLOPs the same way): 10 blocks, 5 of them routed at
 * 12.5 %, cost 5 + 5/8 ≈ 5.6 dense blocks; 8 blocks, 4 routed at 50 %, cost 6.
 *
 *   npm run exp depth && npm run results -- depth && npm run depth -- depth
 */
const base = (layers: number) => replace(gpt2({ vocab: 4096, width: 128, context: 256, layers, heads: 4 }), { activation: () => activation("gelu") })

export default experiment({
  description: "Dynamic depth: plain, LayerDrop, shallow, early exit and mixture-of-depths at 6 blocks (width 128), 2 seeds, 524 k tokens",
  models: {
    plain: base(6),
    layerdrop: withPolicy(base(6), layerDrop({ rate: 0.2 })),
    shallow: base(3),
    "early-exit": withPolicy(base(6), earlyExit({ threshold: 0.9, measure: "softmax", heads: "shared" })),
    "mod-12": withPolicy(base(10), mixtureOfDepths({ capacity: 0.125, every: 2 })),
    "mod-50": withPolicy(base(8), mixtureOfDepths({ capacity: 0.5, every: 2 })),
  },
  data: tinystories({ tokenizer: { bpe: 4096 } }),
  budget: { tokens: 524_288 },
  batch: 16,
  optimizer: adamw({ lr: cosine({ peak: 3e-3, warmup: 32, floor: 3e-4 }), weightDecay: 0.1 }),
  eval: { every: 250, tokens: 131_072 },
  checkpoint: { every: 32 },
  seeds: [1, 2],
})
