import { Schema } from "effect"
import type { AttentionDescription } from "../../kind.js"
import { type AttentionBaseOptions, attentionDefaults, attentionFields, headIssues, headsLabel, innerWidth, projectionParams } from "./fields.js"

/** Dense causal multi-head attention (Vaswani et al. 2017), as in GPT-2. */
const schema = Schema.Struct({ ...attentionFields, kind: Schema.Literal("full") })
export type FullAttention = typeof schema.Type

const make = (o: AttentionBaseOptions): FullAttention => ({ ...attentionDefaults(o), kind: "full" })

export const full: AttentionDescription<FullAttention> & { make: typeof make } = {
  schema,
  make,
  check: (spec, dims) => headIssues(spec, dims),
  params: (spec, dims) => projectionParams(innerWidth(spec, dims.width), dims, spec.bias),
  // QKᵀ and AV: 2·T·(H·dh) multiply-adds each per token over the whole context.
  flops: (spec, dims) => 4 * dims.context * innerWidth(spec, dims.width),
  label: (spec) => `full(${headsLabel(spec)})`,
  causal: () => true,
  visible: () => (_h, i, j) => j <= i,
  // The K and V projections.
  keyValues: (spec, dims) => 4 * dims.width * innerWidth(spec, dims.width),
}
