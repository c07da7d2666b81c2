import { Schema } from "effect"
import type { PosencDescription } from "../../kind.js"

/** No positional information (NoPE): causal masking alone lets the model infer order. */
const schema = Schema.Struct({ op: Schema.Literal("posenc"), kind: Schema.Literal("none") })

export const none: PosencDescription<typeof schema.Type> & { make: () => typeof schema.Type } = {
  schema,
  make: () => ({ op: "posenc", kind: "none" }),
  params: () => ({}),
  flops: () => 0,
  label: () => "none",
}
