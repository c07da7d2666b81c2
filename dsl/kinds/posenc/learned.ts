import { Schema } from "effect"
import type { PosencDescription } from "../../kind.js"

/** A learned absolute position table added to the token embeddings (GPT-2). */
const schema = Schema.Struct({ op: Schema.Literal("posenc"), kind: Schema.Literal("learned") })
export type Learned = typeof schema.Type

export const learned: PosencDescription<Learned> & { make: () => Learned } = {
  schema,
  make: () => ({ op: "posenc", kind: "learned" }),
  params: (_spec, dims) => ({
    table: { shape: [dims.context, dims.width], init: { kind: "normal", std: 0.02 }, decay: false, embedding: true },
  }),
  flops: () => 0,
  label: () => "learned",
  maxLength: (_spec, dims) => dims.context,
}
