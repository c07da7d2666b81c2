import * as tf from "@tensorflow/tfjs"
import { fusedActivation } from "../backend/fused.js"
import type { ActivationCompute } from "../model/kind.js"

export const geluOf = (x: tf.Tensor): tf.Tensor =>
  fusedActivation("gelu", x) ?? tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2)))))

export const gelu: ActivationCompute<unknown> = { apply: (_spec, x) => geluOf(x) }
