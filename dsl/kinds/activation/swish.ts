import { Schema } from "effect"
import type { ActivationDescription } from "../../kind.js"

/**
 * Swish, x·σ(βx) (Ramachandran et al. 2017), and SiLU, its β = 1 case (Elfwing et al. 2018),
 * kept as its own tag because that is the name most configurations use.
 */
const swishSchema = Schema.Struct({ kind: Schema.Literal("swish"), beta: Schema.Finite })
const siluSchema = Schema.Struct({ kind: Schema.Literal("silu") })
export type Swish = typeof swishSchema.Type

export const swish: ActivationDescription<Swish> & { make: (o?: { beta?: number }) => Swish } = {
  schema: swishSchema,
  make: (o = {}) => ({ kind: "swish", beta: o.beta ?? 1 }),
  label: (spec) => (spec.beta === 1 ? "swish" : `swish(β=${spec.beta})`),
  gated: false,
}

export const silu: ActivationDescription<typeof siluSchema.Type> & { make: () => typeof siluSchema.Type } = {
  schema: siluSchema,
  make: () => ({ kind: "silu" }),
  label: () => "silu",
  gated: false,
}
