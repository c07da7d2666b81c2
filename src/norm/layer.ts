import * as tf from "@tensorflow/tfjs"
import { Schema } from "effect"
import { PositiveNumber } from "../model/fields.js"
import { fusedNorm } from "../backend/fused.js"
import type { NormKind } from "../model/kind.js"

/** LayerNorm (Ba et al. 2016) over the last axis, with a learned gain and optional bias. */
const schema = Schema.Struct({
  op: Schema.Literal("norm"),
  kind: Schema.Literal("layer"),
  eps: PositiveNumber,
  bias: Schema.Boolean,
})
type LayerNorm = typeof schema.Type

const composed = (x: tf.Tensor, gain: tf.Tensor, eps: number): tf.Tensor => {
  const { mean, variance } = tf.moments(x, -1, true)
  return tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps))), gain)
}

export const layer: NormKind<LayerNorm> & { make: (o?: { eps?: number; bias?: boolean }) => LayerNorm } = {
  schema,
  make: (o = {}) => ({ op: "norm", kind: "layer", eps: o.eps ?? 1e-5, bias: o.bias ?? true }),
  params: (spec, dims) => ({
    gain: { shape: [dims.width], init: { kind: "ones" }, decay: false },
    ...(spec.bias ? { bias: { shape: [dims.width], init: { kind: "zeros" }, decay: false } } : {}),
  }),
  // Mean, variance, normalise and scale: a handful of operations per element, no matmul.
  flops: () => 0,
  label: (spec) => (spec.bias ? "layer" : "layer(no bias)"),
  apply: (p, x, spec) =>
    tf.tidy(() => {
      const y = fusedNorm(x, p("gain"), spec.eps, true) ?? composed(x, p("gain"), spec.eps)
      return spec.bias ? tf.add(y, p("bias")) : y
    }),
}
