import * as tf from "@tensorflow/tfjs"
import { fusedCrossEntropy, fusedCrossEntropyGrad } from "../backend/fused.js"

/**
 * Each row's −log softmax at its target and log Σ exp: by the fused kernel where the backend
 * has it (`fused`), composed otherwise. The distillation loss shares it, so its hard-target
 * part has the same bits as this loss.
 */
export const targetNll = (logits: tf.Tensor2D, targets: tf.Tensor1D): { nll: tf.Tensor1D; lse: tf.Tensor1D; fused: boolean } => {
  const [n, v] = logits.shape
  const fused = fusedCrossEntropy(logits, targets)
  if (fused) return { nll: fused[0], lse: fused[1], fused: true }
  const lse = tf.logSumExp(logits, 1) as tf.Tensor1D
  const nll = tf.sub(lse, tf.gather(logits.reshape([n * v]), tf.add(tf.mul(tf.range(0, n, 1, "int32"), tf.scalar(v, "int32")), targets))) as tf.Tensor1D
  return { nll, lse, fused: false }
}

/** (softmax − onehot)·scale [N, V] in tfjs ops, from logits, their lse and a per-row scale. */
export const composedTargetGrad = (logits: tf.Tensor2D, lse: tf.Tensor1D, targets: tf.Tensor1D, scale: tf.Tensor1D): tf.Tensor2D => {
  const [n, v] = logits.shape
  const probs = tf.exp(tf.sub(logits, lse.reshape([n, 1])))
  return tf.mul(tf.sub(probs, tf.oneHot(targets, v, 1, 0, "float32")), scale.reshape([n, 1])) as tf.Tensor2D
}

/**
 * Mean next-token cross-entropy over the positions whose weight is 1 (padding has weight 0).
 * Written as one custom gradient, (softmax − onehot)·w/Σw, so the backward pass is a single
 * elementwise expression over [N, V] instead of the chain of gradients of logSumExp and gather;
 * on a backend with the fused kernels, one kernel each way.
 *
 * logits [N, V] float32, targets [N] int32, weights [N] float32.
 */
export const crossEntropy = (logits: tf.Tensor2D, targets: tf.Tensor1D, weights: tf.Tensor1D): tf.Scalar => {
  const f = tf.customGrad((x, save) => {
    const input = x as tf.Tensor2D
    const scale = tf.div(weights, tf.maximum(tf.sum(weights), 1)) as tf.Tensor1D
    const { nll, lse, fused } = targetNll(input, targets)
    const value = tf.sum(tf.mul(nll, scale)) as tf.Scalar
    // The engine disposes everything the forward pass made except what is saved here.
    ;(save as unknown as (saved: tf.Tensor[]) => void)([input, lse, scale, targets])
    return {
      value,
      gradFunc: (dy, saved) => {
        const [xs, l, w, ids] = saved as [tf.Tensor2D, tf.Tensor1D, tf.Tensor1D, tf.Tensor1D]
        if (fused) return fusedCrossEntropyGrad(xs, l, ids, tf.mul(w, dy) as tf.Tensor1D)
        return composedTargetGrad(xs, l, ids, tf.mul(w, dy) as tf.Tensor1D)
      },
    }
  })
  return f(logits) as tf.Scalar
}

/** Natural-log loss to bits per byte, given the split's average UTF-8 bytes per token. */
export const bitsPerByte = (lossNats: number, bytesPerToken: number): number => lossNats / Math.LN2 / bytesPerToken
