import { Schema } from "effect"
import { PositiveNumber } from "../../fields.js"
import type { NormDescription } from "../../kind.js"

/** LayerNorm (Ba et al. 2016) over the last axis, with a learned gain and optional bias. */
const schema = Schema.Struct({
  op: Schema.Literal("norm"),
  kind: Schema.Literal("layer"),
  eps: PositiveNumber,
  bias: Schema.Boolean,
})
export type LayerNorm = typeof schema.Type

export const layer: NormDescription<LayerNorm> & { make: (o?: { eps?: number; bias?: boolean }) => LayerNorm } = {
  schema,
  make: (o = {}) => ({ op: "norm", kind: "layer", eps: o.eps ?? 1e-5, bias: o.bias ?? true }),
  params: (spec, dims) => ({
    gain: { shape: [dims.width], init: { kind: "ones" }, decay: false },
    ...(spec.bias ? { bias: { shape: [dims.width], init: { kind: "zeros" }, decay: false } } : {}),
  }),
  // Mean, variance, normalise and scale: a handful of operations per element, no matmul.
  flops: () => 0,
  label: (spec) => (spec.bias ? "layer" : "layer(no bias)"),
}
