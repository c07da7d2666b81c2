import * as tf from "@tensorflow/tfjs"
import type { ActivationCompute } from "../model/kind.js"

export const relu: ActivationCompute<unknown> = { apply: (_spec, x) => tf.relu(x), epilogue: "relu" }
