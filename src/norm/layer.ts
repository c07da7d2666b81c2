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
      const y = fusedNorm(x, p("gain"), spec.eps, true) ?? composed(x, p("gain"), spec.eps)
      return spec.bias ? tf.add(y, p("bias")) : y
    }),
}
