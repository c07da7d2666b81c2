import * as tf from "@tensorflow/tfjs"
import { Schema } from "effect"
import { fusedActivation } from "../backend/fused.js"
import type { ActivationKind } from "../model/kind.js"

const schema = Schema.Struct({ kind: Schema.Literal("gelu") })

export const geluOf = (x: tf.Tensor): tf.Tensor =>
  fusedActivation("gelu", x) ?? tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2)))))

/** GELU in its exact form, x·Φ(x) = ½x(1 + erf(x/√2)) (Hendrycks & Gimpel 2016). */
export const gelu: ActivationKind<typeof schema.Type> & { make: () => typeof schema.Type } = {
  schema,
  make: () => ({ kind: "gelu" }),
  label: () => "gelu",
  gated: false,
  apply: (_spec, x) => geluOf(x),
}
