import { posenc, replace } from "../dsl/index.js"
import { adamw, cosine, type ExperimentOptions, experiment, tinystories, variant } from "../src/index.js"
import { baseModel } from "./base.js"

/**
 * The TinyStories speedrun on two CPU cores: the fastest recipe to a target validation bits
 * per byte (the first 131,072 tokens of valid.txt, as every table). Each record is the one
 * before it plus one change, so the record before it is its ablation; `npm run exp
 * speedrun-records` trains them all, `npm run exp speedrun` the current one. A run stops at
 * the first evaluation (every 25 steps) at or below the target and records the training time
 * (evaluations excluded), tokens and FLOPs it took; the token budget is the most it may spend.
 */
export const target = 1.042

/** What every record shares unless it says otherwise: the base decoder's data, batch and evaluation. */
export const recipe = {
  data: tinystories({ tokenizer: { bpe: 4096 } }),
  budget: { tokens: 4_000_000, bpb: target },
  batch: 16,
  optimizer: adamw({ lr: cosine({ peak: 2e-3, warmup: 50, floor: 2e-4 }), weightDecay: 0.1, clip: 1 }),
  eval: { every: 25, tokens: 131_072 },
  checkpoint: { every: 100 },
} satisfies Omit<ExperimentOptions, "description" | "models">

/** The records in order, each with the change it makes. */
export const records = {
  /** The research plan's base decoder (experiments/base.ts) and its recipe. */
  base: variant(baseModel, {}),
  /** ALiBi instead of learned positions, with a peak rate of 3·10⁻³ and a floor of 10⁻⁴. */
  alibi: variant(replace(baseModel, { posenc: () => posenc("alibi") }), {
    optimizer: adamw({ lr: cosine({ peak: 3e-3, warmup: 50, floor: 1e-4 }), weightDecay: 0.1, clip: 1 }),
  }),
}

export default experiment({
  ...recipe,
  description: `TinyStories speedrun records: time to val bpb ${target} on two CPU cores, each record the previous one plus one change`,
  models: records,
  seeds: [1, 2, 3],
})
