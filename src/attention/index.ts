import type { AttentionKind } from "../model/kind.js"
import { moduleFor, registered, type SpecOf, unionSchema } from "../model/registry.js"
import { full } from "./full.js"
import { linformer, linformerCausal } from "./linformer.js"
import { longformer, slidingWindow } from "./sliding.js"
import { sparseFixed, sparseStrided } from "./sparse.js"

/**
 * The attention kinds, by tag. Registering a new kind is one line here; the DSL's schema,
 * the `attention(kind, opts)` combinator and the interpreter all follow from this record.
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
export type AttentionOptions<K extends AttentionKindTag> = Parameters<(typeof attentionKinds)[K]["make"]>[0]

export const attention = <K extends AttentionKindTag>(kind: K, options: AttentionOptions<K>): AttentionSpec =>
  (registered(attentionKinds, "attention", kind).make as (o: AttentionOptions<K>) => AttentionSpec)(options)

export const AttentionSchema = unionSchema(attentionKinds)
export const attentionModule = (spec: AttentionSpec) => moduleFor<AttentionKind<AttentionSpec>>(attentionKinds, spec)
