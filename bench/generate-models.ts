import { existsSync } from "node:fs"
import { join } from "node:path"
import { activation, attention, type DecoderSpec, type DepthPolicy, earlyExit, gpt2, layerDrop, llama, mixtureOfDepths, replace, withPolicy } from "../dsl/index.js"

/**
 * The models `npm run bench -- generate` measures, by group (`--models base,stories15m,depth,attention`).
 * Each is a spec with seeded weights, or a trained run directory whose weights it takes.
 */
export interface Subject {
  readonly name: string
  /** The model with seeded weights; with `run`, the policy `policy` on the run's own model instead. */
  readonly spec: DecoderSpec
  /** A trained run directory (spec.json, checkpoint/) to take the model and weights from. */
  readonly run?: string
  /** With `run`: the depth policy set on the run's model (another threshold or measure), as `npm run derive` sets it. */
  readonly policy?: DepthPolicy
  /**
   * Seeded early exit: the blocks per position the trained model runs at the README's
   * threshold; the threshold is chosen so that the seeded model runs as many (its
   * confidences say nothing at README thresholds).
   */
  readonly blocksPerToken?: number
  /** The model F (FLOPs per position, plain / this) is measured against. */
  readonly plain?: string
  /** Exported to the --peer (llama2.c's run.c, or llama.cpp where its llama architecture expresses the model) and run beside ours. */
  readonly peer?: boolean
  /** The prompt fills the context but for the new tokens, so decoding runs at the last positions. */
  readonly longPrompt?: boolean
}

/** experiments/depth.ts's decoder: width 128, 4 heads, context 256, GELU. */
const depthBase = (vocab: number, layers: number) => replace(gpt2({ vocab, width: 128, context: 256, layers, heads: 4 }), { activation: () => activation("gelu") })

/**
 * The depth experiment's models (experiments/depth.ts) at the README's thresholds: the plain
 * 6-block model, early exit by softmax at 0.9 (as trained) and by saturation at 0.99,
 * LayerDrop (which evaluates and decodes every block), and mixture-of-depths at 12.5 % and
 * 50 %, FLOP-matched in training to the plain model. Each takes `runs/depth/<variant>/seed1`
 * when that run exists.
 */
const depthModels = (vocab: number, runs: string | undefined): Subject[] => {
  const trained = (variant: string) => {
    const dir = runs === undefined ? undefined : join(runs, variant, "seed1")
    return dir !== undefined && existsSync(join(dir, "spec.json")) ? dir : undefined
  }
  const plain = "depth/plain"
  const exit = (measure: "softmax" | "saturation", threshold: number, blocksPerToken: number): Subject => {
    const policy = earlyExit({ threshold, measure, heads: "shared" })
    const run = trained("early-exit")
    return run
      ? { name: `depth/early-exit-${measure}`, spec: withPolicy(depthBase(vocab, 6), policy), run, policy, plain }
      : { name: `depth/early-exit-${measure}`, spec: withPolicy(depthBase(vocab, 6), policy), blocksPerToken, plain }
  }
  const of = (name: string, variant: string, spec: DecoderSpec): Subject => {
    const run = trained(variant)
    return { name, spec, ...(run ? { run } : {}), plain }
  }
  return [
    of(plain, "plain", depthBase(vocab, 6)),
    // The README's table: softmax > 0.9 runs 5.98 blocks per token, saturation > 0.99 runs 2.40.
    exit("softmax", 0.9, 5.98),
    exit("saturation", 0.99, 2.4),
    of("depth/layerdrop", "layerdrop", withPolicy(depthBase(vocab, 6), layerDrop({ rate: 0.2 }))),
    of("depth/mod-12", "mod-12", withPolicy(depthBase(vocab, 10), mixtureOfDepths({ capacity: 0.125, every: 2 }))),
    of("depth/mod-50", "mod-50", withPolicy(depthBase(vocab, 8), mixtureOfDepths({ capacity: 0.5, every: 2 }))),
  ]
}

/**
 * The attention experiment's decoder (experiments/attention.ts: width 128, 4 blocks, 4 heads)
 * at context 1024, with a sliding window of 64, Longformer (the same window, position 0
 * global) and causal Linformer (k 64, blocks of 64), decoding after a prompt that fills the
 * context but for the new tokens.
 */
const attentionModels = (vocab: number): Subject[] => {
  const at = (kind: string, spec: ReturnType<typeof attention>): Subject => ({
    name: `attention/${kind}`,
    spec: replace(gpt2({ vocab, width: 128, context: 1024, layers: 4, heads: 4 }), { activation: () => activation("gelu"), attention: () => spec }),
    longPrompt: true,
  })
  return [
    at("sliding-window", attention("sliding-window", { heads: 4, window: 64 })),
    at("longformer", attention("longformer", { heads: 4, window: 64, global: [0] })),
    at("linformer-causal", attention("linformer-causal", { heads: 4, k: 64, block: 64 })),
  ]
}

export const groups: Record<string, (vocab: number, runs: string | undefined) => Subject[]> = {
  base: (vocab) => [{ name: "base", spec: gpt2({ vocab, width: 256, context: 256, layers: 4, heads: 4, activation: "relu" }), peer: true }],
  stories15m: (vocab) => [{ name: "stories15m", spec: llama({ vocab, width: 288, context: 256, layers: 6, heads: 6 }), peer: true }],
  depth: depthModels,
  attention: (vocab) => attentionModels(vocab),
}
