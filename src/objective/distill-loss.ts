import * as tf from "@tensorflow/tfjs"
import { fusedSoftTargetGrad, fusedSoftTargets } from "../backend/fused.js"
import { composedTargetGrad, targetNll } from "../model/loss.js"

/**
 * The logit-distillation loss (Hinton et al. 2015) over the positions whose weight is 1:
 *
 *   α·CE(targets) + (1 − α)·T²·D,   D = KL(p_teacher,T ∥ p_student,T) ("forward-kl")
 *                                     or KL(p_student,T ∥ p_teacher,T) ("reverse-kl", MiniLLM's direction)
 *
 * with p_T = softmax(logits / T), each row weighted w/Σw like the plain loss. T² keeps the
 * soft term's gradient, T·(p_s − p_t) for the forward KL, of the same size at every
 * temperature: it tends to the logit-matching gradient (z_s − z̄_s − z_t + z̄_t)/V as T grows.
 * One custom gradient: on a backend with the fused kernels, the forward pass is the
 * hard-target kernel and one soft-target kernel, and the backward pass one kernel writing the
 * whole [N, V] gradient; elsewhere tfjs ops compute the same formulas.
 *
 * logits and teacher [N, V] float32, targets [N] int32, weights [N] float32.
 */
export type Divergence = "forward-kl" | "reverse-kl"

export interface SoftTargets {
  /** The teacher's logits for the same positions; a constant (no gradient flows to it). */
  readonly teacher: tf.Tensor2D
  readonly temperature: number
  readonly alpha: number
  readonly divergence: Divergence
}

/** log-probabilities at temperature T and their normalisers, composed. */
const logSoftmaxAt = (x: tf.Tensor2D, invT: tf.Scalar): { logp: tf.Tensor2D; lse: tf.Tensor1D } => {
  const xt = tf.mul(x, invT) as tf.Tensor2D
  const lse = tf.logSumExp(xt, 1) as tf.Tensor1D
  return { logp: tf.sub(xt, lse.reshape([-1, 1])) as tf.Tensor2D, lse }
}

/** Σ p·(log p − log q) per row, with 0·log 0 = 0 (a NaN probability stays NaN). */
const klRows = (logp: tf.Tensor2D, logq: tf.Tensor2D): tf.Tensor1D => {
  const p = tf.exp(logp)
  return tf.sum(tf.where(tf.equal(p, 0), tf.zerosLike(p), tf.mul(p, tf.sub(logp, logq))), 1) as tf.Tensor1D
}

export const distillationLoss = (logits: tf.Tensor2D, targets: tf.Tensor1D, weights: tf.Tensor1D, soft: SoftTargets): tf.Scalar => {
  const [n, v] = logits.shape
  const { teacher, temperature: T, alpha } = soft
  if (teacher.shape[0] !== n || teacher.shape[1] !== v) throw new Error(`distillation: teacher logits [${teacher.shape}] differ from the student's [${logits.shape}]`)
  const reverse = soft.divergence === "reverse-kl"
  const f = tf.customGrad((x, save) => {
    const s = x as tf.Tensor2D
    const scale = tf.div(weights, tf.maximum(tf.sum(weights), 1)) as tf.Tensor1D
    const ceScale = tf.mul(scale, alpha) as tf.Tensor1D
    const hard = targetNll(s, targets)
    const fused = hard.fused ? fusedSoftTargets(s, teacher, T, reverse) : undefined
    let lseS: tf.Tensor1D, lseT: tf.Tensor1D, div: tf.Tensor1D
    if (fused) [lseS, lseT, div] = fused
    else {
      const invT = tf.scalar(1 / T)
      const st = logSoftmaxAt(s, invT)
      const tt = logSoftmaxAt(teacher, invT)
      ;[lseS, lseT] = [st.lse, tt.lse]
      div = reverse ? klRows(st.logp, tt.logp) : klRows(tt.logp, st.logp)
    }
    const value = tf.sum(tf.add(tf.mul(hard.nll, ceScale), tf.mul(div, tf.mul(scale, (1 - alpha) * T * T)))) as tf.Scalar
    ;(save as unknown as (saved: tf.Tensor[]) => void)([s, teacher, hard.lse, targets, lseS, lseT, div, ceScale, scale])
    return {
      value,
      gradFunc: (dy, saved) => {
        const [xs, t, lse, ids, ls, lt, d, ce, w] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor1D, tf.Tensor1D, tf.Tensor1D, tf.Tensor1D, tf.Tensor1D, tf.Tensor1D, tf.Tensor1D]
        // d(T²·D)/ds = T·g_soft: one T of T² cancels the 1/T of the tempered softmax.
        const ceGrad = tf.mul(ce, dy) as tf.Tensor1D
        const kdGrad = tf.mul(tf.mul(w, (1 - alpha) * T), dy) as tf.Tensor1D
        if (fused) return fusedSoftTargetGrad({ student: xs, teacher: t, lse, targets: ids, lseS: ls, lseT: lt, div: d, ceScale: ceGrad, kdScale: kdGrad }, T, reverse)
        const hardGrad = composedTargetGrad(xs, lse, ids, ceGrad)
        const invT = tf.scalar(1 / T)
        const lps = tf.sub(tf.mul(xs, invT), ls.reshape([n, 1]))
        const lpt = tf.sub(tf.mul(t, invT), lt.reshape([n, 1]))
        const ps = tf.exp(lps)
        const g = reverse ? tf.where(tf.equal(ps, 0), tf.zerosLike(ps), tf.mul(ps, tf.sub(tf.sub(lps, lpt), d.reshape([n, 1])))) : tf.sub(ps, tf.exp(lpt))
        const k = kdGrad.reshape([n, 1])
        // A row whose soft term weighs 0 gets exactly the hard-target gradient, as in the kernel.
        return tf.where(tf.broadcastTo(tf.equal(k, 0), [n, v]), hardGrad, tf.add(hardGrad, tf.mul(g, k)))
      },
    }
  })
  return f(logits) as tf.Scalar
}
