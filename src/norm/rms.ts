import * as tf from "@tensorflow/tfjs"
import { Schema } from "effect"
import { PositiveNumber } from "../model/fields.js"
import { fusedNorm } from "../backend/fused.js"
import type { NormKind } from "../model/kind.js"

/**
 * RMSNorm (Zhang & Sennrich 2019): x / √(mean(x²) + eps) · gain over the last axis; no
 * centring and no bias.
 */
const schema = Schema.Struct({
  op: Schema.Literal("norm"),
  kind: Schema.Literal("rms"),
  eps: PositiveNumber,
})
type RmsNorm = typeof schema.Type

export const rms: NormKind<RmsNorm> & { make: (o?: { eps?: number }) => RmsNorm } = {
  schema,
  make: (o = {}) => ({ op: "norm", kind: "rms", eps: o.eps ?? 1e-6 }),
  params: (_spec, dims) => ({ gain: { shape: [dims.width], init: { kind: "ones" }, decay: false } }),
  flops: () => 0,
  label: () => "rms",
  apply: (p, x, spec) =>
    fusedNorm(x, p("gain"), spec.eps, false) ?? tf.tidy(() => tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), spec.eps))), p("gain"))),
}
