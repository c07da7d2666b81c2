import { attention, block, decoder, depth, ffn, norm, posenc } from "../dsl/index.js"
import type { VariantModel } from "../src/experiment/define.js"
import { adamw, cosine, experiment, gradual, heads, magnitude, neurons, prune, tinystories, wanda } from "../src/index.js"
import base from "./base.js"

/**
 * Research plan step 6: how much of the base decoder (experiments/base.ts, runs/base, trained
 * first when missing) can go, by which method, at what cost in bits per byte; whether a short
 * recovery fine-tune wins it back; and whether a pruned model beats a dense one of the same
 * size trained from scratch on the same tokens.
 *
 * - Unstructured, of the blocks' matrices: magnitude (one threshold for all, or each matrix
 *   alone) and Wanda at 25/50/75/90 %, one-shot and fine-tuned; gradual magnitude (Zhu & Gupta)
 *   during the fine-tune.
 * - Structured, made smaller: 25/50 % of the 16 attention heads by importance (Michel et al.)
 *   or at random, and of the 4096 FFN neurons by Taylor score (or activation norm, one-shot) or
 *   at random, one-shot and fine-tuned.
 * - Dense from scratch with the non-embedding parameters of the 50 % structured models (2 heads
 *   of 64 per block; FFNs of 512), on the source's 4 M tokens plus the fine-tune's.
 *
 * A fine-tune is 64 steps of 16 × 256 tokens (6.6 % of the source's training) at a tenth of
 * the source's peak learning rate.
 */
const source = "base"
const finetuneTokens = 262_144
const finetune = { tokens: finetuneTokens, optimizer: adamw({ lr: cosine({ peak: 2e-4, warmup: 4, floor: 2e-5 }), weightDecay: 0.1, clip: 1 }) }
const percents = [25, 50, 75, 90] as const

const unstructured = Object.fromEntries(
  percents.flatMap((p) => {
    const s = p / 100
    const both = (name: string, method: Parameters<typeof prune>[0]["method"]): Array<[string, VariantModel]> => [
      [name, prune({ source, method })],
      [`${name}-ft`, prune({ source, method, finetune })],
    ]
    return [
      ...both(`magnitude-global-${p}`, magnitude({ scope: "global", sparsity: s })),
      ...both(`magnitude-layer-${p}`, magnitude({ scope: "layer", sparsity: s })),
      ...both(`wanda-${p}`, wanda({ sparsity: s })),
      [`gradual-${p}-ft`, prune({ source, method: gradual({ scope: "layer", sparsity: s, end: 0.75, every: 4 }), finetune })],
    ]
  }),
)

const structured = Object.fromEntries(
  [25, 50].flatMap((p): Array<[string, VariantModel]> => {
    const f = p / 100
    return [
      ...(["importance", "random"] as const).flatMap((by): Array<[string, VariantModel]> => [
        [`heads-${by}-${p}`, prune({ source, method: heads({ remove: f, by }) })],
        [`heads-${by}-${p}-ft`, prune({ source, method: heads({ remove: f, by }), finetune })],
      ]),
      ...(["taylor", "random"] as const).flatMap((by): Array<[string, VariantModel]> => [
        [`neurons-${by}-${p}`, prune({ source, method: neurons({ remove: f, by }) })],
        [`neurons-${by}-${p}-ft`, prune({ source, method: neurons({ remove: f, by }), finetune })],
      ]),
      [`neurons-activation-${p}`, prune({ source, method: neurons({ remove: f, by: "activation" }) })],
    ]
  }),
)

/** The base decoder with other attention and FFN sizes: the dense models of the structured ones' size. */
const dense = (attentionOptions: { heads: number; headDim?: number }, ffnOptions: { mult?: number; hidden?: number }) =>
  decoder({
    vocab: 4096,
    width: 256,
    context: 256,
    posenc: posenc("learned"),
    layers: depth(4, block({ attention: attention("full", attentionOptions), ffn: ffn("relu", ffnOptions), norm: norm("layer") })),
    norm: norm("layer"),
    tied: true,
  })

const sourceTokens = "tokens" in base.training.budget ? base.training.budget.tokens : 0

export default experiment({
  description: "Pruning the base decoder: magnitude, gradual, Wanda, heads and FFN neurons, one-shot and fine-tuned, against dense models of the same size",
  models: {
    // The source itself, evaluated as this experiment evaluates.
    unpruned: prune({ source, method: magnitude({ sparsity: 0 }) }),
    ...unstructured,
    ...structured,
    "dense-heads-50": dense({ heads: 2, headDim: 64 }, { mult: 4 }),
    "dense-neurons-50": dense({ heads: 4 }, { hidden: 512 }),
  },
  data: tinystories({ tokenizer: { bpe: 4096 } }),
  // The dense models from scratch: the source's tokens and the fine-tune's.
  budget: { tokens: sourceTokens + finetuneTokens },
  batch: 16,
  optimizer: base.training.optimizer,
  eval: { every: 250, tokens: 131_072 },
  checkpoint: { every: 16 },
  seeds: [1, 2],
})
