import { Schema } from "effect"
import type { PosencDescription } from "../../kind.js"

/**
 * ALiBi (Press et al. 2022, "Train Short, Test Long"): no position embedding; head h adds
 * -m_h·(n - m) to the score of query n and key m, with slopes from the layer's own head count.
 */
const schema = Schema.Struct({ op: Schema.Literal("posenc"), kind: Schema.Literal("alibi") })
export type Alibi = typeof schema.Type

export const alibi: PosencDescription<Alibi> & { make: () => Alibi } = {
  schema,
  make: () => ({ op: "posenc", kind: "alibi" }),
  params: () => ({}),
  flops: () => 0,
  label: () => "alibi",
}
