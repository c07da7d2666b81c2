import { Schema } from "effect"
import type { ActivationDescription } from "../../kind.js"

/**
 * GLU variants (Shazeer 2020, "GLU Variants Improve Transformer"): act(x·W_gate) ⊙ (x·W_in).
 * The three differ only in the gate's activation. GEGLU uses the exact (erf) GELU.
 */
const gatedKind = <K extends string>(kind: K) => {
  const schema = Schema.Struct({ kind: Schema.Literal(kind) })
  const description: ActivationDescription<typeof schema.Type> & { make: () => typeof schema.Type } = {
    schema,
    make: () => ({ kind }),
    label: () => kind,
    gated: true,
  }
  return description
}

export const swiglu = gatedKind("swiglu")
export const geglu = gatedKind("geglu")
export const reglu = gatedKind("reglu")
