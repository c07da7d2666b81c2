import * as tf from "@tensorflow/tfjs"
import type { LayerNorm } from "../../dsl/kinds/norm/layer.js"
import { fusedNorm } from "../backend/fused.js"
import type { NormCompute } from "../model/kind.js"

const composed = (x: tf.Tensor, gain: tf.Tensor, eps: number): tf.Tensor => {
  const { mean, variance } = tf.moments(x, -1, true)
  return tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps))), gain)
}

export const layer: NormCompute<LayerNorm> = {
  apply: (p, x, spec) =>
    tf.tidy(() => {
      const bias = spec.bias ? p("bias") : undefined
      const fused = fusedNorm(x, p("gain"), spec.eps, true, bias)
      if (fused) return fused
      const y = composed(x, p("gain"), spec.eps)
      return bias ? tf.add(y, bias) : y
    }),
}
