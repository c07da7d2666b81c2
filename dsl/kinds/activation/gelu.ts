import { Schema } from "effect"
import type { ActivationDescription } from "../../kind.js"

const schema = Schema.Struct({ kind: Schema.Literal("gelu") })

/** GELU in its exact form, x·Φ(x) = ½x(1 + erf(x/√2)) (Hendrycks & Gimpel 2016). */
export const gelu: ActivationDescription<typeof schema.Type> & { make: () => typeof schema.Type } = {
  schema,
  make: () => ({ kind: "gelu" }),
  label: () => "gelu",
  gated: false,
}
