import { Schema } from "effect"
import type { Dims, ParamDecls } from "../../kind.js"
import { type DepthPolicyDescription, needsBlocks, unless } from "./description.js"

/**
 * Early exit (CALM, Schuster et al. 2022; Depth-Adaptive Transformer, Elbayad et al. 2020):
 * an exit head after every block — the final norm and LM head shared, or the final norm and
 * a head of its own per block — trained with the per-block losses weighted ω_i ∝ i (i = 1…n).
 * At inference a token leaves after the first block whose confidence exceeds `threshold`:
 * `softmax`, the exit head's top-1 minus top-2 probability (in [0, 1]), or `saturation`, the
 * cosine between the block's input and output hidden states (in [-1, 1]). Threshold 1 never
 * exits. A token that left keeps its hidden state; later blocks still compute their keys and
 * values from it (CALM's state propagation), so later tokens attend to it as usual.
 */
export const measures = ["softmax", "saturation"] as const
export type Measure = (typeof measures)[number]

const schema = Schema.Struct({
  op: Schema.Literal("policy"),
  kind: Schema.Literal("early-exit"),
  measure: Schema.Literals(measures),
  threshold: Schema.Finite,
  heads: Schema.Literals(["shared", "per-block"]),
})
export type EarlyExit = typeof schema.Type

export interface EarlyExitOptions {
  readonly threshold?: number
  readonly measure?: Measure
  readonly heads?: "shared" | "per-block"
}

/** The range of each confidence measure. */
export const measureRange: Readonly<Record<Measure, readonly [number, number]>> = { softmax: [0, 1], saturation: [-1, 1] }

/** An exit head's matmul: 2 FLOPs per weight of the width × vocab matrix. */
export const headFlops = (dims: Dims): number => 2 * dims.width * dims.vocab

export const earlyExitPolicy: DepthPolicyDescription<EarlyExit> & { make: (o?: EarlyExitOptions) => EarlyExit } = {
  schema,
  make: (o = {}) => ({ op: "policy", kind: "early-exit", measure: o.measure ?? "softmax", threshold: o.threshold ?? 0.9, heads: o.heads ?? "shared" }),
  check: (p, blocks) => {
    const [lo, hi] = measureRange[p.measure]
    return [
      ...unless(p.threshold >= lo && p.threshold <= hi, "threshold", `the ${p.measure} measure lies in [${lo}, ${hi}], so the threshold must too (${hi} never exits), got ${p.threshold}`),
      ...needsBlocks(blocks, "early-exit", "with one block there is nowhere to exit before the end"),
    ]
  },
  // Every block but the last has an exit head; the last one's is the LM head.
  params: (p, block, blocks, dims): ParamDecls =>
    p.heads === "per-block" && block < blocks - 1 ? { "exit.weight": { shape: [dims.width, dims.vocab], init: { kind: "normal", std: 0.02 }, decay: true, output: true } } : {},
  // Confidence by softmax applies an exit head after every block but the last; the cosine is elementwise.
  flops: (p, blocks, dims) => (p.measure === "softmax" ? (blocks - 1) * headFlops(dims) : 0),
  // A confidence never exceeds its measure's maximum, so at that threshold no token leaves and the unused exit heads change nothing.
  departs: (p) => (p.threshold >= measureRange[p.measure][1] ? undefined : `a token whose ${p.measure} confidence exceeds ${p.threshold} leaves before the last block`),
  label: (p) => `early-exit(${p.measure}>${p.threshold}, ${p.heads === "shared" ? "shared head" : "head per block"})`,
}
