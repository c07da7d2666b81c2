import { Schema } from "effect"
import { PositiveInt } from "../../fields.js"
import type { Issue, PosencDescription } from "../../kind.js"

/**
 * T5 relative position bias (Raffel et al. 2020, §2.1; Mesh TensorFlow's
 * relative_position_bucket): a learned scalar per head and distance bucket added to the
 * scores, one table shared by all layers. Causal, so buckets are one-sided: distances below
 * buckets/2 get their own bucket, larger ones share logarithmically wider buckets up to
 * maxDistance, beyond which all fall into the last. The table is [buckets, heads]; a layer
 * with h heads reads its first h columns, so layers may have fewer heads than the table.
 */
const schema = Schema.Struct({
  op: Schema.Literal("posenc"),
  kind: Schema.Literal("t5"),
  heads: PositiveInt,
  buckets: PositiveInt.check(Schema.isGreaterThanOrEqualTo(2)),
  maxDistance: PositiveInt,
})
export type T5 = typeof schema.Type

export const t5: PosencDescription<T5> & {
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
    heads <= spec.heads ? [] : [{ path: ["heads"], message: `the bias table has ${spec.heads} heads, fewer than the ${heads} of the attention layer` }],
}
