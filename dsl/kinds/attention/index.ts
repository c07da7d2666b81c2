import type { AttentionDescription } from "../../kind.js"
import { entryFor, moduleFor, type SpecOf, type SpecOfTag } from "../../registry.js"
import { full } from "./full.js"
import { linformer, linformerCausal } from "./linformer.js"
import { longformer, slidingWindow } from "./sliding.js"
import { sparseFixed, sparseStrided } from "./sparse.js"

/**
 * The attention kinds, by tag. Registering a new kind is one line here (its description) and
 * one in src/attention/index.ts (its computation); the DSL's decoding, the `attention(kind,
 * opts)` combinator and the interpreter all follow from these records.
 */
export const attentionKinds = {
  full,
  "sparse-strided": sparseStrided,
  "sparse-fixed": sparseFixed,
  "sliding-window": slidingWindow,
  longformer,
  linformer,
  "linformer-causal": linformerCausal,
} as const

export type AttentionSpec = SpecOf<typeof attentionKinds>
export type AttentionKindTag = keyof typeof attentionKinds
export type AttentionOf<K extends AttentionKindTag> = SpecOfTag<typeof attentionKinds, K>
export type AttentionOptions<K extends AttentionKindTag> = Parameters<(typeof attentionKinds)[K]["make"]>[0]

export const attention = <K extends AttentionKindTag>(kind: K, options: AttentionOptions<K>): AttentionSpec =>
  (entryFor(attentionKinds, "attention", kind).make as (o: AttentionOptions<K>) => AttentionSpec)(options)

export const attentionModule = (spec: AttentionSpec) => moduleFor<AttentionDescription<AttentionSpec>>(attentionKinds, "attention", spec)
