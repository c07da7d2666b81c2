import * as tf from "@tensorflow/tfjs"
import { fusedActivation } from "../backend/fused.js"
import type { ActivationCompute } from "../model/kind.js"

export const geluTanh: ActivationCompute<unknown> = {
  apply: (_spec, x) =>
    fusedActivation("gelu-tanh", x) ??
    tf.tidy(() => {
      const inner = tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.mul(x, tf.square(x)))))
      return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(inner)))
    }),
}
