import * as tf from "@tensorflow/tfjs"
import type { T5 } from "../../dsl/kinds/posenc/t5.js"
import type { PosencCompute } from "../model/kind.js"

/**
 * Bucket of a query `distance` positions after its key (negative distances, future keys,
 * clamp to 0): n itself below buckets/2, else
 * buckets/2 + ⌊log(n / (buckets/2)) / log(maxDistance / (buckets/2)) · (buckets - buckets/2)⌋,
 * capped at buckets - 1.
 */
export const t5Bucket = (distance: number, buckets: number, maxDistance: number): number => {
  const n = Math.max(distance, 0)
  const exact = Math.floor(buckets / 2)
  if (n < exact) return n
  return Math.min(buckets - 1, exact + Math.floor((Math.log(n / exact) / Math.log(maxDistance / exact)) * (buckets - exact)))
}

/** The table's first `heads` columns serve a layer with that many heads. */
export const t5: PosencCompute<T5> = {
  hooks: (p, spec) => ({
    scoreBias: (heads, tq, tk, qOffset, kOffset) => {
      if (heads > spec.heads) throw new Error(`t5: bias table has ${spec.heads} heads, attention has ${heads}`)
      return tf.tidy(() => {
        const ids = new Int32Array(tq * tk)
        for (let i = 0; i < tq; i++) {
          for (let j = 0; j < tk; j++) ids[i * tk + j] = t5Bucket(qOffset + i - (kOffset + j), spec.buckets, spec.maxDistance)
        }
        const table = heads === spec.heads ? p("table") : tf.slice(p("table"), [0, 0], [spec.buckets, heads])
        const bias = tf.gather(table, tf.tensor1d(ids, "int32"))
        return bias.reshape([tq, tk, heads]).transpose([2, 0, 1]) as tf.Tensor3D
      })
    },
  }),
}
