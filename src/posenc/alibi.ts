import * as tf from "@tensorflow/tfjs"
import type { Alibi } from "../../dsl/kinds/posenc/alibi.js"
import type { PosencCompute } from "../model/kind.js"

/**
 * ALiBi's slopes are geometric, starting at 2^(-8/H) with that ratio. For H not a power of
 * two, the reference implementation (ofirpress/attention_with_linear_biases, get_slopes)
 * takes the slopes of the closest lower power of two P and appends every other slope of 2P
 * (those not already among P's), in that order.
 */
const geometric = (n: number): number[] => Array.from({ length: n }, (_, i) => 2 ** ((-8 * (i + 1)) / n))

export const alibiSlopes = (heads: number): number[] => {
  const p = 2 ** Math.floor(Math.log2(heads))
  if (p === heads) return geometric(heads)
  return [...geometric(p), ...geometric(2 * p).filter((_, i) => i % 2 === 0).slice(0, heads - p)]
}

export const alibi: PosencCompute<Alibi> = {
  hooks: () => ({
    distanceSlopes: (heads) => alibiSlopes(heads).map((m) => -m),
    scoreBias: (heads, tq, tk, qOffset, kOffset) =>
      tf.tidy(() => {
        const distance = new Float32Array(tq * tk)
        // Future keys get a positive bias here, but the causal mask removes them anyway.
        for (let i = 0; i < tq; i++) for (let j = 0; j < tk; j++) distance[i * tk + j] = qOffset + i - (kOffset + j)
        const slopes = tf.tensor3d(alibiSlopes(heads).map((m) => -m), [heads, 1, 1])
        return tf.mul(slopes, tf.tensor3d(distance, [1, tq, tk])) as tf.Tensor3D
      }),
  }),
}
