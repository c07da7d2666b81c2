import type { AttentionKindTag, AttentionOf, AttentionSpec } from "../../dsl/kinds/attention/index.js"
import { moduleFor } from "../../dsl/registry.js"
import type { AttentionCompute } from "../model/kind.js"
import { full } from "./full.js"
import { linformer, linformerCausal } from "./linformer.js"
import { sliding } from "./sliding.js"
import { sparse } from "./sparse.js"

/** How each attention kind computes, by the tags of its description (dsl/kinds/attention/index.ts). */
export const attentionCompute: { readonly [K in AttentionKindTag]: AttentionCompute<AttentionOf<K>> } = {
  full,
  "sparse-strided": sparse,
  "sparse-fixed": sparse,
  "sliding-window": sliding,
  longformer: sliding,
  linformer,
  "linformer-causal": linformerCausal,
}

export const attentionApply = (spec: AttentionSpec) => moduleFor<AttentionCompute<AttentionSpec>>(attentionCompute, "attention", spec)
