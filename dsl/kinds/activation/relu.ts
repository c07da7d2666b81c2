import { Schema } from "effect"
import type { ActivationDescription } from "../../kind.js"

const schema = Schema.Struct({ kind: Schema.Literal("relu") })

/** max(0, x). */
export const relu: ActivationDescription<typeof schema.Type> & { make: () => typeof schema.Type } = {
  schema,
  make: () => ({ kind: "relu" }),
  label: () => "relu",
  gated: false,
}
