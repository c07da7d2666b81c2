import * as tf from "@tensorflow/tfjs"
import type { Swish } from "../../dsl/kinds/activation/swish.js"
import { fusedActivation } from "../backend/fused.js"
import type { ActivationCompute } from "../model/kind.js"

export const swishOf = (x: tf.Tensor, beta: number): tf.Tensor => fusedActivation("swish", x, beta) ?? tf.tidy(() => tf.mul(x, tf.sigmoid(tf.mul(x, beta))))

export const swish: ActivationCompute<Swish> = { apply: (spec, x) => swishOf(x, spec.beta) }

export const silu: ActivationCompute<unknown> = { apply: (_spec, x) => swishOf(x, 1) }
