import * as tf from "@tensorflow/tfjs"
import type { LossTerm } from "../model/compile.js"

/**
 * PaLM's auxiliary z-loss (Chowdhery et al. 2022, its training setup): coefficient · mean
 * (log Z)² over the positions whose weight is 1, log Z = log Σ exp of each position's logits,
 * which keeps the softmax normaliser near 1 (log Z near 0). Added to another loss term of the same logits, so
 * it composes with cross-entropy and distillation alike and leaves their bits as they are; one
 * custom gradient, 2·coefficient·(w/Σw)·log Z·softmax.
 */
export const zLoss = (logits: tf.Tensor2D, weights: tf.Tensor1D, coefficient: number): tf.Scalar => {
  const [n] = logits.shape
  const f = tf.customGrad((x, save) => {
    const input = x as tf.Tensor2D
    const scale = tf.div(weights, tf.maximum(tf.sum(weights), 1)) as tf.Tensor1D
    const lse = tf.logSumExp(input, 1) as tf.Tensor1D
    const value = tf.mul(tf.sum(tf.mul(tf.square(lse), scale)), coefficient) as tf.Scalar
    ;(save as unknown as (saved: tf.Tensor[]) => void)([input, lse, scale])
    return {
      value,
      gradFunc: (dy, saved) => {
        const [xs, l, w] = saved as [tf.Tensor2D, tf.Tensor1D, tf.Tensor1D]
        const row = tf.mul(tf.mul(tf.mul(l, w), dy), 2 * coefficient).reshape([n, 1])
        return tf.mul(tf.exp(tf.sub(xs, l.reshape([n, 1]))), row) as tf.Tensor2D
      },
    }
  })
  return f(logits) as tf.Scalar
}

/** `term` plus the z-loss at `coefficient`; `term` itself when there is none. */
export const withZLoss = (term: LossTerm, coefficient: number | undefined): LossTerm =>
  coefficient === undefined ? term : (logits, targets, weights) => tf.add(term(logits, targets, weights), zLoss(logits, weights, coefficient)) as tf.Scalar
