import * as tf from "@tensorflow/tfjs"
import { Schema } from "effect"
import { PositiveInt } from "../model/fields.js"
import type { Issue, PosencKind } from "../model/kind.js"

/**
 * T5 relative position bias (Raffel et al. 2020, §2.1; Mesh TensorFlow's
 * relative_position_bucket): a learned scalar per head and distance bucket added to the
 * scores, one table shared by all layers. Causal, so buckets are one-sided: distances below
 * buckets/2 get their own bucket, larger ones share logarithmically wider buckets up to
 * maxDistance, beyond which all fall into the last. The table is [buckets, heads], so the
 * spec names the head count; the structural checks match it against the attention layers.
 */
const schema = Schema.Struct({
  op: Schema.Literal("posenc"),
  kind: Schema.Literal("t5"),
  heads: PositiveInt,
  buckets: PositiveInt.check(Schema.isGreaterThanOrEqualTo(2)),
  maxDistance: PositiveInt,
})
type T5 = typeof schema.Type

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

export const t5: PosencKind<T5> & {
  make: (o: { heads: number; buckets?: number; maxDistance?: number }) => T5
  checkHeads: (spec: T5, heads: number) => Issue[]
} = {
  schema,
  make: (o) => ({ op: "posenc", kind: "t5", heads: o.heads, buckets: o.buckets ?? 32, maxDistance: o.maxDistance ?? 128 }),
  check: (spec) =>
    spec.maxDistance > Math.floor(spec.buckets / 2)
      ? []
      : [{ path: ["maxDistance"], message: `${spec.maxDistance} must exceed the ${Math.floor(spec.buckets / 2)} exact buckets` }],
  params: (spec) => ({
    // A position table: counted with the embeddings and, like them, not decayed.
    table: { shape: [spec.buckets, spec.heads], init: { kind: "normal", std: 0.02 }, decay: false, embedding: true },
  }),
  flops: () => 0,
  label: (spec) => `t5(b=${spec.buckets},max=${spec.maxDistance})`,
  checkHeads: (spec, heads) =>
    spec.heads === heads ? [] : [{ path: ["heads"], message: `${spec.heads} does not match the ${heads} heads of the attention layer` }],
  hooks: (p, spec) => ({
    scoreBias: (heads, tq, tk, qOffset, kOffset) => {
      if (heads !== spec.heads) throw new Error(`t5: bias table has ${spec.heads} heads, attention has ${heads}`)
      return tf.tidy(() => {
        const ids = new Int32Array(tq * tk)
        for (let i = 0; i < tq; i++) {
          for (let j = 0; j < tk; j++) ids[i * tk + j] = t5Bucket(qOffset + i - (kOffset + j), spec.buckets, spec.maxDistance)
        }
        const bias = tf.gather(p("table"), tf.tensor1d(ids, "int32"))
        return bias.reshape([tq, tk, heads]).transpose([2, 0, 1]) as tf.Tensor3D
      })
    },
  }),
}
