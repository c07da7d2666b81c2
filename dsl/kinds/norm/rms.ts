import { Schema } from "effect"
import { PositiveNumber } from "../../fields.js"
import type { NormDescription } from "../../kind.js"

/**
 * RMSNorm (Zhang & Sennrich 2019): x / √(mean(x²) + eps) · gain over the last axis; no
 * centring and no bias.
 */
const schema = Schema.Struct({
  op: Schema.Literal("norm"),
  kind: Schema.Literal("rms"),
  eps: PositiveNumber,
})
export type RmsNorm = typeof schema.Type

/** The default eps, also QK-norm's (dsl/kinds/attention/fields.ts). */
export const RMS_EPS = 1e-6

export const rms: NormDescription<RmsNorm> & { make: (o?: { eps?: number }) => RmsNorm } = {
  schema,
  make: (o = {}) => ({ op: "norm", kind: "rms", eps: o.eps ?? RMS_EPS }),
  params: (_spec, dims) => ({ gain: { shape: [dims.width], init: { kind: "ones" }, decay: false } }),
  flops: () => 0,
  label: () => "rms",
}
