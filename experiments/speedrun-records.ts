import { posenc, replace } from "../dsl/index.js"
import { adamw, cosine, type ExperimentOptions, experiment, muon, tinystories, variant, wsd } from "../src/index.js"
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

const alibiModel = replace(baseModel, { posenc: () => posenc("alibi") })
const alibiOptimizer = adamw({ lr: cosine({ peak: 3e-3, warmup: 50, floor: 1e-4 }), weightDecay: 0.1, clip: 1 })

/** The records in order, each with the change it makes. */
export const records = {
  /** The research plan's base decoder (experiments/base.ts) and its recipe. */
  base: variant(baseModel, {}),
  /** ALiBi instead of learned positions, with a peak rate of 3·10⁻³ and a floor of 10⁻⁴. */
  alibi: variant(alibiModel, { optimizer: alibiOptimizer }),
  /**
   * Muon for the blocks' matrices (peak rate 0.02, Keller Jordan's reference value, cosine to
   * 10⁻³); AdamW as before for the embedding, norms and biases. Chosen on 300 held-out
   * training stories (`tune: { stories: 300 }`), not on valid.txt: at a 1.31 M-token budget
   * 0.985 bits per byte against AdamW's 1.084; a peak of 0.04 trailed 0.02 at every evaluation.
   */
  muon: variant(alibiModel, {
    optimizer: muon({ lr: cosine({ peak: 0.02, warmup: 50, floor: 1e-3 }), adamw: { lr: alibiOptimizer.lr, weightDecay: 0.1 }, clip: 1 }),
  }),
  /**
   * The schedule sized to five minutes: warmup-stable-decay to zero over the last 40 % of a
   * 1.31 M-token budget (320 steps), for both parts, instead of a cosine over 4 M tokens that
   * a run stopping at the target never finishes. On the held-out stories at 1.31 M tokens:
   * 0.975 bits per byte against the cosine's 0.985 over the same budget.
   */
  wsd: variant(alibiModel, {
    budget: { tokens: 1_310_720, bpb: target },
    optimizer: muon({
      lr: wsd({ peak: 0.02, warmup: 50, decay: 0.4, floor: 0 }),
      adamw: { lr: wsd({ peak: 3e-3, warmup: 50, decay: 0.4, floor: 0 }), weightDecay: 0.1 },
      clip: 1,
    }),
  }),
  /**
   * The AdamW part (embedding and tied head, norms, biases) at a peak of 2.4·10⁻², eight times
   * record 4's; the Muon part as before. Chosen on the held-out stories at 1.31 M tokens, where
   * 3, 6, 12 and 24·10⁻³ ended at 0.975, 0.956, 0.945 and 0.941 bits per byte.
   */
  "adam-lr": variant(alibiModel, {
    budget: { tokens: 1_310_720, bpb: target },
    optimizer: muon({
      lr: wsd({ peak: 0.02, warmup: 50, decay: 0.4, floor: 0 }),
      adamw: { lr: wsd({ peak: 2.4e-2, warmup: 50, decay: 0.4, floor: 0 }), weightDecay: 0.1 },
      clip: 1,
    }),
  }),
}

export default experiment({
  ...recipe,
  description: `TinyStories speedrun records: time to val bpb ${target} on two CPU cores, each record the previous one plus one change`,
  models: records,
  seeds: [1, 2, 3],
})
