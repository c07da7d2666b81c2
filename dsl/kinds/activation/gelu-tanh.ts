import { Schema } from "effect"
import type { ActivationDescription } from "../../kind.js"

const schema = Schema.Struct({ kind: Schema.Literal("gelu-tanh") })

/** GELU's tanh approximation, ½x(1 + tanh(√(2/π)(x + 0.044715x³))) (Hendrycks & Gimpel 2016), as in GPT-2 and BERT. */
export const geluTanh: ActivationDescription<typeof schema.Type> & { make: () => typeof schema.Type } = {
  schema,
  make: () => ({ kind: "gelu-tanh" }),
  label: () => "gelu-tanh",
  gated: false,
}
