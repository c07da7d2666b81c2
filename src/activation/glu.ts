import * as tf from "@tensorflow/tfjs"
import type { ActivationCompute } from "../model/kind.js"
import { geluOf } from "./gelu.js"
import { swishOf } from "./swish.js"

/** act(gate) ⊙ value: the GLU variants differ only in the gate's activation. */
const gated = (name: string, gate: (x: tf.Tensor) => tf.Tensor): ActivationCompute<unknown> => ({
  apply: (_spec, x, g) => {
    if (g === undefined) throw new Error(`${name} is gated: it needs the gate projection`)
    return tf.tidy(() => tf.mul(gate(g), x))
  },
})

export const swiglu = gated("swiglu", (x) => swishOf(x, 1))
export const geglu = gated("geglu", geluOf)
export const reglu = gated("reglu", (x) => tf.relu(x))
