import * as tf from "@tensorflow/tfjs"
import { Schema } from "effect"
import { fusedActivation } from "../backend/fused.js"
import type { ActivationKind } from "../model/kind.js"

const schema = Schema.Struct({ kind: Schema.Literal("gelu-tanh") })

/**
 * GELU's tanh approximation, ½x(1 + tanh(√(2/π)(x + 0.044715x³))) (Hendrycks & Gimpel 2016),
 * as in GPT-2 and BERT.
 */
export const geluTanh: ActivationKind<typeof schema.Type> & { make: () => typeof schema.Type } = {
  schema,
  make: () => ({ kind: "gelu-tanh" }),
  label: () => "gelu-tanh",
  gated: false,
  apply: (_spec, x) =>
    fusedActivation("gelu-tanh", x) ??
    tf.tidy(() => {
      const inner = tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.mul(x, tf.square(x)))))
      return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(inner)))
    }),
}
