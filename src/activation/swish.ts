import * as tf from "@tensorflow/tfjs"
import { Schema } from "effect"
import { fusedActivation } from "../backend/fused.js"
import type { ActivationKind } from "../model/kind.js"

/**
 * Swish, x·σ(βx) (Ramachandran et al. 2017), and SiLU, its β = 1 case (Elfwing et al. 2018),
 * kept as its own tag because that is the name most configurations use.
 */
const swishSchema = Schema.Struct({ kind: Schema.Literal("swish"), beta: Schema.Finite })
const siluSchema = Schema.Struct({ kind: Schema.Literal("silu") })

export const swishOf = (x: tf.Tensor, beta: number): tf.Tensor => fusedActivation("swish", x, beta) ?? tf.tidy(() => tf.mul(x, tf.sigmoid(tf.mul(x, beta))))

export const swish: ActivationKind<typeof swishSchema.Type> & { make: (o?: { beta?: number }) => typeof swishSchema.Type } = {
  schema: swishSchema,
  make: (o = {}) => ({ kind: "swish", beta: o.beta ?? 1 }),
  label: (spec) => (spec.beta === 1 ? "swish" : `swish(β=${spec.beta})`),
  gated: false,
  apply: (spec, x) => swishOf(x, spec.beta),
}

export const silu: ActivationKind<typeof siluSchema.Type> & { make: () => typeof siluSchema.Type } = {
  schema: siluSchema,
  make: () => ({ kind: "silu" }),
  label: () => "silu",
  gated: false,
  apply: (_spec, x) => swishOf(x, 1),
}
