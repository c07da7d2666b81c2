import * as tf from "@tensorflow/tfjs"
import type { ActivationCompute } from "../model/kind.js"

/**
 * max(0, x), whose gradient dy·step(x) is read from the output (step(relu(x)) = step(x)):
 * tfjs's own gradient keeps the input, a second hidden-sized tensor per FFN, since the next
 * product keeps the output anyway.
 */
const reluKeepingOutput = tf.customGrad((x, save) => {
  const y = tf.relu(x as tf.Tensor)
  ;(save as unknown as (saved: tf.Tensor[]) => void)([y])
  return { value: y, gradFunc: (dy, saved) => tf.mul(dy as tf.Tensor, tf.step(saved[0]!)) }
})

export const relu: ActivationCompute<unknown> = { apply: (_spec, x) => reluKeepingOutput(x) as tf.Tensor, epilogue: "relu" }
