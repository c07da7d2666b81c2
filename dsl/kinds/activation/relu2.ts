import { Schema } from "effect"
import type { ActivationDescription } from "../../kind.js"

const schema = Schema.Struct({ kind: Schema.Literal("relu2") })

/** Squared ReLU, max(0, x)² (So et al. 2021, "Primer"). */
export const relu2: ActivationDescription<typeof schema.Type> & { make: () => typeof schema.Type } = {
  schema,
  make: () => ({ kind: "relu2" }),
  label: () => "relu2",
  gated: false,
}
