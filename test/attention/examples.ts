import { attention } from "../../dsl/index.js"
import type { AttentionKindTag, AttentionSpec } from "../../dsl/kinds/attention/index.js"

/**
 * One representative spec per registered attention kind, for the checks that run over the
 * whole registry (causality, cached decoding). The Record type makes a new kind a compile
 * error here until it has an entry.
 */
export const representative: Record<AttentionKindTag, AttentionSpec> = {
  full: attention("full", { heads: 2 }),
  "sparse-strided": attention("sparse-strided", { heads: 2, stride: 4, combine: "merged" }),
  "sparse-fixed": attention("sparse-fixed", { heads: 2, stride: 5, summary: 2, combine: "split" }),
  "sliding-window": attention("sliding-window", { heads: 2, window: [3, 6], dilation: [1, 2] }),
  longformer: attention("longformer", { heads: 2, window: 4, global: [0, 9] }),
  linformer: attention("linformer", { heads: 2, k: 5, sharing: "headwise" }),
  "linformer-causal": attention("linformer-causal", { heads: 2, k: 4, block: 6, sharing: "layerwise" }),
}

/**
 * The same kinds with 3 heads of size 6 (so heads × head size ≠ the test models' width 16)
 * and per-layer options for a 3-block stack, for the registry checks on heterogeneous stacks.
 */
export const uneven: Record<AttentionKindTag, AttentionSpec> = {
  full: attention("full", { heads: 3, headDim: 6 }),
  "sparse-strided": attention("sparse-strided", { heads: 3, headDim: 6, stride: 4, combine: "alternate" }),
  "sparse-fixed": attention("sparse-fixed", { heads: 3, headDim: 6, stride: 5, summary: 2, combine: "split" }),
  "sliding-window": attention("sliding-window", { heads: 3, headDim: 6, window: [3, 6, 4], dilation: [1, 2, 1] }),
  longformer: attention("longformer", { heads: 3, headDim: 6, window: 4, global: [0, 9] }),
  linformer: attention("linformer", { heads: 3, headDim: 6, k: 5, sharing: "none" }),
  "linformer-causal": attention("linformer-causal", { heads: 3, headDim: 6, k: 4, block: 6, sharing: "layerwise" }),
}
