import * as tf from "@tensorflow/tfjs"
import type { HiddenMatch } from "../experiment/objective/spec.js"

/**
 * Hidden-state matching (as in TinyBERT and MiniLM's layer losses): the student's block output
 * [B, T, Ds], mapped by a learned projection [Ds, Dt] when the widths differ, against the
 * teacher's [B, T, Dt], per position as 1 − cosine similarity or as the mean squared
 * difference over the width, averaged over the positions whose weight is 1 like the loss.
 */
export const hiddenMatchLoss = (
  student: tf.Tensor3D,
  teacher: tf.Tensor3D,
  projection: tf.Tensor2D | undefined,
  weights: tf.Tensor1D,
  kind: HiddenMatch["loss"],
): tf.Scalar => {
  const [b, t, ds] = student.shape
  const dt = teacher.shape[2]
  const s = projection ? tf.matMul(student.reshape([b * t, ds]), projection) : student.reshape([b * t, ds])
  const h = teacher.reshape([b * t, dt])
  const rows =
    kind === "mse"
      ? tf.mean(tf.squaredDifference(s, h), 1)
      : // max(·, 1e-24) keeps a zero vector's gradient finite.
        tf.sub(1, tf.mul(tf.sum(tf.mul(s, h), 1), tf.rsqrt(tf.maximum(tf.mul(tf.sum(tf.square(s), 1), tf.sum(tf.square(h), 1)), 1e-24))))
  return tf.sum(tf.mul(rows, tf.div(weights, tf.maximum(tf.sum(weights), 1)))) as tf.Scalar
}
