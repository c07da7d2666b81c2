import * as tf from "@tensorflow/tfjs"
import { Schema } from "effect"
import type { ActivationKind } from "../model/kind.js"
import { geluOf } from "./gelu.js"
import { swishOf } from "./swish.js"

/**
 * GLU variants (Shazeer 2020, "GLU Variants Improve Transformer"): act(x·W_gate) ⊙ (x·W_in).
 * The three differ only in the gate's activation, so they share this module. GEGLU uses the
 * exact (erf) GELU, as the `gelu` kind does.
 */
const gatedKind = <K extends string>(kind: K, gate: (x: tf.Tensor) => tf.Tensor) => {
  const schema = Schema.Struct({ kind: Schema.Literal(kind) })
  const module: ActivationKind<typeof schema.Type> & { make: () => typeof schema.Type } = {
    schema,
    make: () => ({ kind }),
    label: () => kind,
    gated: true,
    apply: (_spec, x, g) => {
      if (g === undefined) throw new Error(`${kind} is gated: it needs the gate projection`)
      return tf.tidy(() => tf.mul(gate(g), x))
    },
  }
  return module
}

export const swiglu = gatedKind("swiglu", (x) => swishOf(x, 1))
export const geglu = gatedKind("geglu", geluOf)
export const reglu = gatedKind("reglu", (x) => tf.relu(x))
