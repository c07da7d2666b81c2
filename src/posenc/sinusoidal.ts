import * as tf from "@tensorflow/tfjs"
import type { Sinusoidal } from "../../dsl/kinds/posenc/sinusoidal.js"
import type { PosencCompute } from "../model/kind.js"

/** The table [t, d] for positions offset..offset+t-1. */
export const sinusoidTable = (t: number, d: number, offset: number): Float32Array => {
  const table = new Float32Array(t * d)
  for (let i = 0; i < t; i++) {
    for (let k = 0; k < d; k++) {
      const angle = (offset + i) / 10000 ** ((k - (k % 2)) / d)
      table[i * d + k] = k % 2 === 0 ? Math.sin(angle) : Math.cos(angle)
    }
  }
  return table
}

export const sinusoidal: PosencCompute<Sinusoidal> = {
  embed: (_p, x, spec, offset) =>
    tf.tidy(() => {
      const [, t, d] = x.shape
      const tokens = spec.scaleEmbeddings ? tf.mul(x, Math.sqrt(d)) : x
      return tf.add(tokens, tf.tensor2d(sinusoidTable(t, d, offset), [t, d])) as tf.Tensor3D
    }),
}
