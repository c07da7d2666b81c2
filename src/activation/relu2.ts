import * as tf from "@tensorflow/tfjs"
import type { ActivationCompute } from "../model/kind.js"

export const relu2: ActivationCompute<unknown> = { apply: (_spec, x) => tf.tidy(() => tf.square(tf.relu(x))) }
