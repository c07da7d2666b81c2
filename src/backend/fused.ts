import * as tf from "@tensorflow/tfjs"

/**
 * Composite ops that a backend may run as single kernels (the native one does); callers
 * compose tfjs ops where it does not. Composed, autodiff keeps every intermediate for the
 * backward pass and runs one kernel per op.
 */
const available = (kernelName: string): boolean => tf.getKernel(kernelName, tf.getBackend()) !== undefined

/**
 * FFN activations: one pass forward, one pass backward (dy·f′(x)), and only x kept in
 * between (composed, the erf GELU of the ablation model kept about 96 MiB per layer). The
 * backend that has the kernel registers its gradient (src/backend/native/register.ts).
 */
export const FUSED_ACTIVATION = "FusedActivation"
export const FUSED_ACTIVATION_GRAD = "FusedActivationGrad"

/** The kernels' op codes (native/kernels.h ActOp). */
export const FUSED_OPS = { gelu: 0, "gelu-tanh": 1, swish: 2 } as const
export type FusedOp = keyof typeof FUSED_OPS

/** f(x) by the current backend's fused kernel, or undefined where it has none (compose the ops then). */
export const fusedActivation = (op: FusedOp, x: tf.Tensor, alpha = 0): tf.Tensor | undefined =>
  available(FUSED_ACTIVATION) ? (tf.engine().runKernel(FUSED_ACTIVATION, { x }, { op: FUSED_OPS[op], alpha }) as tf.Tensor) : undefined

/**
 * Softmax cross-entropy over the vocabulary: logits [N, V] and int32 targets [N] give
 * [nll, lse] ([N] each: −log softmax at the target, and log Σ exp); the gradient kernel gives
 * (softmax − onehot)·scale [N, V] from logits, lse, targets and a per-row scale. Both run
 * inside the loss's custom gradient, so neither needs a registered gradient.
 */
export const SOFTMAX_CROSS_ENTROPY = "SoftmaxCrossEntropy"
export const SOFTMAX_CROSS_ENTROPY_GRAD = "SoftmaxCrossEntropyGrad"

/** [nll, lse] by the fused kernel, or undefined where the backend has none. */
export const fusedCrossEntropy = (logits: tf.Tensor2D, targets: tf.Tensor1D): [nll: tf.Tensor1D, lse: tf.Tensor1D] | undefined =>
  available(SOFTMAX_CROSS_ENTROPY) ? (tf.engine().runKernel(SOFTMAX_CROSS_ENTROPY, { logits, targets }) as unknown as [tf.Tensor1D, tf.Tensor1D]) : undefined

/**
 * The gradient kernel; only where fusedCrossEntropy ran. When `logits` is the only tensor on
 * its buffer (a custom gradient's saved copy), the native kernel writes the gradient over it:
 * read nothing from those logits afterwards.
 */
export const fusedCrossEntropyGrad = (logits: tf.Tensor2D, lse: tf.Tensor1D, targets: tf.Tensor1D, scale: tf.Tensor1D): tf.Tensor2D =>
  tf.engine().runKernel(SOFTMAX_CROSS_ENTROPY_GRAD, { logits, lse, targets, scale }) as tf.Tensor2D

/**
 * Early exit's softmax confidence: each row of logits [N, V] gives the top-1 minus the top-2
 * probability of its softmax [N], the probabilities never written out.
 */
export const SOFTMAX_MARGIN = "SoftmaxMargin"

/** The margins by the fused kernel, or undefined where the backend has none. */
export const fusedSoftmaxMargin = (logits: tf.Tensor2D): tf.Tensor1D | undefined =>
  available(SOFTMAX_MARGIN) ? (tf.engine().runKernel(SOFTMAX_MARGIN, { logits }) as tf.Tensor1D) : undefined

/**
 * Early exit's saturation: the cosine of each row of a and b [N, D], clamped to [-1, 1], as
 * the composed ops compute it, bit for bit (native reduce.cc row_cosines) [N].
 */
export const ROW_COSINE = "RowCosine"

/** The cosines by the fused kernel, or undefined where the backend has none. */
export const fusedRowCosine = (a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor1D | undefined =>
  available(ROW_COSINE) ? (tf.engine().runKernel(ROW_COSINE, { a, b }) as tf.Tensor1D) : undefined

/**
 * Distillation's soft targets (src/objective/distill-loss.ts): student and teacher logits
 * [N, V] give [lseS, lseT, div] ([N] each: log Σ exp of each side at temperature T, and the
 * divergence KL(p_teacher ∥ p_student), or KL(p_student ∥ p_teacher) when `reverse`); the
 * gradient kernel writes the whole loss gradient [N, V], the hard-target part included:
 * (softmax − onehot)·ceScale + soft·kdScale. Like the hard-target kernels, both run inside
 * the loss's custom gradient.
 */
export const SOFT_TARGET_DIVERGENCE = "SoftTargetDivergence"
export const SOFT_TARGET_GRAD = "SoftTargetGrad"

/** [lseS, lseT, div] by the fused kernel, or undefined where the backend has none. */
export const fusedSoftTargets = (
  student: tf.Tensor2D,
  teacher: tf.Tensor2D,
  temperature: number,
  reverse: boolean,
): [lseS: tf.Tensor1D, lseT: tf.Tensor1D, div: tf.Tensor1D] | undefined =>
  available(SOFT_TARGET_DIVERGENCE)
    ? (tf.engine().runKernel(SOFT_TARGET_DIVERGENCE, { student, teacher }, { temperature, reverse }) as unknown as [tf.Tensor1D, tf.Tensor1D, tf.Tensor1D])
    : undefined

/** The gradient kernel; only where fusedSoftTargets and fusedCrossEntropy ran. */
export const fusedSoftTargetGrad = (
  inputs: {
    readonly student: tf.Tensor2D
    readonly teacher: tf.Tensor2D
    readonly lse: tf.Tensor1D
    readonly targets: tf.Tensor1D
    readonly lseS: tf.Tensor1D
    readonly lseT: tf.Tensor1D
    readonly div: tf.Tensor1D
    readonly ceScale: tf.Tensor1D
    readonly kdScale: tf.Tensor1D
  },
  temperature: number,
  reverse: boolean,
): tf.Tensor2D => tf.engine().runKernel(SOFT_TARGET_GRAD, { ...inputs }, { temperature, reverse }) as tf.Tensor2D

/**
 * Layer normalisation (center) or RMS normalisation over the last axis times a gain [D], plus a
 * bias [D] when given: [y, mean, rstd] forward (mean and 1/σ per row), [dx, dgain(, dbias)]
 * backward, x̂ recomputed rather than kept, and the bias added and its gradient summed in the
 * same passes.
 */
export const NORMALIZE = "Normalize"
export const NORMALIZE_GRAD = "NormalizeGrad"

/** (x − μ)·gain/√(var + eps) (+ bias) by the fused kernels, or undefined where the backend has none. */
export const fusedNorm = (x: tf.Tensor, gain: tf.Tensor, eps: number, center: boolean, bias?: tf.Tensor): tf.Tensor | undefined => {
  if (!available(NORMALIZE)) return undefined
  const attrs = { eps, center, bias: bias !== undefined }
  const f = tf.customGrad((...args: unknown[]) => {
    const save = args.pop() as (saved: tf.Tensor[]) => void
    const [xIn, gainIn, biasIn] = args as tf.Tensor[]
    const inputs: tf.NamedTensorMap = biasIn ? { x: xIn!, gain: gainIn!, bias: biasIn } : { x: xIn!, gain: gainIn! }
    const [y, mean, rstd] = tf.engine().runKernel(NORMALIZE, inputs, attrs) as unknown as tf.Tensor[]
    save([xIn!, gainIn!, mean!, rstd!])
    return {
      value: y!,
      gradFunc: (dy, saved) => {
        const [xs, g, m, r] = saved as tf.Tensor[]
        return tf.engine().runKernel(NORMALIZE_GRAD, { x: xs!, gain: g!, mean: m!, rstd: r!, dy: dy as tf.Tensor }, attrs) as unknown as tf.Tensor[]
      },
    }
  })
  return bias ? f(x, gain, bias) : f(x, gain)
}

/**
 * Causal softmax of attention scores [..., tq, tk] (query i sees keys j ≤ i + tk − tq): the
 * additive mask, its construction and the softmax in one pass forward, and the softmax's
 * gradient in one pass backward where tfjs composes four; both read only the visible keys.
 * Masked probabilities are exactly 0 (the −1e9 mask gives 0 or the smallest subnormal), the
 * visible ones the composed ops' float32 operations, summed over fewer zeros.
 */
export const CAUSAL_SOFTMAX = "CausalSoftmax"
export const CAUSAL_SOFTMAX_GRAD = "CausalSoftmaxGrad"

/** softmax(scores + causal mask) by the fused kernels, or undefined where the backend has none. */
export const fusedCausalSoftmax = (scores: tf.Tensor): tf.Tensor | undefined => {
  if (!available(CAUSAL_SOFTMAX) || scores.dtype !== "float32") return undefined
  const f = tf.customGrad((x, save) => {
    const y = tf.engine().runKernel(CAUSAL_SOFTMAX, { x: x as tf.Tensor }) as tf.Tensor
    ;(save as unknown as (saved: tf.Tensor[]) => void)([y])
    return {
      value: y,
      gradFunc: (dy, saved) => tf.engine().runKernel(CAUSAL_SOFTMAX_GRAD, { y: (saved as tf.Tensor[])[0]!, dy: dy as tf.Tensor }) as tf.Tensor,
    }
  })
  return f(scores)
}

/**
 * A dense layer x·w (+ b) (then ReLU), x [N, K], w [K, M]: the bias and the ReLU in the
 * matmul's epilogue (oneDNN post-ops) where composed each is a pass over the [N, M] output,
 * and backward the ReLU's gradient and the bias's (column sums) in one pass, RELU_BIAS_GRAD:
 * y, dy give [dz, db]. tfjs's own fused matMul composes again under a gradient tape whenever
 * it has an activation, so training never got the epilogue from it.
 */
export const RELU_BIAS_GRAD = "ReluBiasGrad"

/** The layer by the fused kernels, or undefined where the backend has none or there is nothing to fuse. */
export const fusedDense = (x: tf.Tensor2D, w: tf.Tensor2D, bias: tf.Tensor | undefined, relu: boolean): tf.Tensor2D | undefined => {
  if ((bias === undefined && !relu) || !available(RELU_BIAS_GRAD) || x.dtype !== "float32") return undefined
  const attrs = { transposeA: false, transposeB: false, activation: relu ? "relu" : "linear" }
  const forward = (inputs: tf.NamedTensorMap): tf.Tensor => tf.engine().runKernel("_FusedMatMul", inputs, attrs) as tf.Tensor
  // The gradients of the matmul's inputs, as tfjs's MatMul gradient computes them.
  const backward = (dy: tf.Tensor, saved: tf.Tensor[]): [dx: tf.Tensor, dw: tf.Tensor, db: tf.Tensor] => {
    const [xs, ws, y] = saved as [tf.Tensor, tf.Tensor, tf.Tensor]
    const [dz, db] = relu ? (tf.engine().runKernel(RELU_BIAS_GRAD, { y, dy }) as unknown as [tf.Tensor, tf.Tensor]) : [dy, tf.sum(dy, 0)]
    return [tf.matMul(dz, ws, false, true), tf.matMul(xs, dz, true, false), db]
  }
  const save = (s: unknown, tensors: tf.Tensor[]) => (s as (saved: tf.Tensor[]) => void)(tensors)
  if (bias === undefined) {
    const f = tf.customGrad((xIn, wIn, s) => {
      const y = forward({ a: xIn as tf.Tensor, b: wIn as tf.Tensor })
      save(s, [xIn as tf.Tensor, wIn as tf.Tensor, y])
      return { value: y, gradFunc: (dy, saved) => backward(dy as tf.Tensor, saved as tf.Tensor[]).slice(0, 2) as tf.Tensor[] }
    })
    return f(x, w) as tf.Tensor2D
  }
  const f = tf.customGrad((xIn, wIn, bIn, s) => {
    const y = forward({ a: xIn as tf.Tensor, b: wIn as tf.Tensor, bias: bIn as tf.Tensor })
    save(s, [xIn as tf.Tensor, wIn as tf.Tensor, y])
    return {
      value: y,
      gradFunc: (dy, saved) => {
        const [dx, dw, db] = backward(dy as tf.Tensor, saved as tf.Tensor[])
        return [dx, dw, db.reshape((bIn as tf.Tensor).shape)]
      },
    }
  })
  return f(x, w, bias) as tf.Tensor2D
}

/**
 * One AdamW step of a parameter (src/optimizer/adamw.ts gives the formula): p, g, m, v in,
 * [p′, m′, v′] out, in one pass where the composed update makes about fourteen. The scalars
 * are [β1, 1 − β1, β2, 1 − β2, 1 − lr·wd, √(1 − β2ᵗ), ε, lr/(1 − β1ᵗ)], used as float32 like
 * the composed update's scalar tensors, so both give the same bits.
 */
export const ADAMW_UPDATE = "AdamWUpdate"

/** [p′, m′, v′] by the fused kernel, or undefined where the backend has none. */
export const fusedAdamW = (
  inputs: { readonly p: tf.Tensor; readonly g: tf.Tensor; readonly m: tf.Tensor; readonly v: tf.Tensor },
  scalars: readonly number[],
  decay: boolean,
): [p: tf.Tensor, m: tf.Tensor, v: tf.Tensor] | undefined =>
  available(ADAMW_UPDATE) && inputs.g.dtype === "float32"
    ? (tf.engine().runKernel(ADAMW_UPDATE, { ...inputs }, { scalars: [...scalars], decay }) as unknown as [tf.Tensor, tf.Tensor, tf.Tensor])
    : undefined

/**
 * Attention of q [B, H, T, dh] (already scaled) over k, v [B, H, Tk, dh] in one kernel each
 * way: the forward pass gives [out, lse] (out [B, H, T, dh], each row's log-sum-exp [B, H, T])
 * and the backward pass [dq, dk, dv], recomputing the probabilities from lse, so training keeps
 * q, k, v, out and lse instead of the B·H·T·Tk probabilities. Causal by default: query i sees
 * keys j with 0 ≤ i − j ≤ span; `ranges` give each query its own range of keys instead (keys
 * gathered from anywhere, as the sparse kinds' parts are), and the pairs outside them cost
 * nothing. `slopes` [H] add slopes[h]·(i − j) to the scores (ALiBi); `rotation` rotates q and k
 * inside both kernels (RoPE, xPos), so the step makes no separate passes for it.
 * On by default: it holds a fraction of the composed ops' memory (21× less at context 4096)
 * and, register-tiled, runs faster than them (one layer at 4096 about 2× on an AVX2 machine:
 * docs/backends.md); TFJS_NATIVE_FUSED_ATTENTION=0 composes the ops instead.
 */
export const FUSED_ATTENTION = "FusedAttention"
export const FUSED_ATTENTION_GRAD = "FusedAttentionGrad"

export interface AttentionPattern {
  /** Most distance i − j a query sees; absent: every earlier key. Not used with `ranges`. */
  readonly span?: number | undefined
  /** Query i sees keys [lo[i], hi[i]) (none where lo[i] ≥ hi[i]: its output is 0, its lse −∞); the same for every head. */
  readonly ranges?: KeyRanges | undefined
  readonly slopes?: readonly number[] | undefined
  /** Rotates q and k in the kernel (RoPE, xPos): q and k are given unrotated (as many keys as queries). */
  readonly rotation?: AttentionRotation | undefined
}

export interface KeyRanges {
  readonly lo: Int32Array
  readonly hi: Int32Array
}

/** x·cos + rotate_half(x)·sin on the pairs (j, j + half), by tables [qcos | qsin | kcos | ksin], each [T, dh]. */
export interface AttentionRotation {
  readonly half: number
  readonly tables: Float32Array
}

/** Whether the current backend has the kernels and the switch lets them run (read at each call, so one process can compare both paths). */
export const attentionFusion = (): boolean => available(FUSED_ATTENTION) && process.env["TFJS_NATIVE_FUSED_ATTENTION"] !== "0"

/** The kernels' attributes: [lo | hi] for T queries, from the pattern's ranges or its causal span. */
const attentionAttrs = (t: number, pattern: AttentionPattern): tf.NamedAttrMap => {
  const ranges = new Int32Array(2 * t)
  if (pattern.ranges !== undefined) {
    if (pattern.ranges.lo.length !== t || pattern.ranges.hi.length !== t) throw new Error(`fused attention: ranges for ${pattern.ranges.lo.length} queries, expected ${t}`)
    ranges.set(pattern.ranges.lo)
    ranges.set(pattern.ranges.hi, t)
  } else {
    const span = pattern.span ?? t
    for (let i = 0; i < t; i++) {
      ranges[i] = Math.max(0, i - span)
      ranges[t + i] = i + 1
    }
  }
  // The ranges and the rotation's tables travel as typed arrays, which tfjs passes through to the kernel untouched.
  return { ranges, slopes: [...(pattern.slopes ?? [])], rotation: pattern.rotation ?? null } as unknown as tf.NamedAttrMap
}

/**
 * [out, lse] by the fused kernel, or undefined where the backend has none or the switch is off.
 * Both are differentiable (the kernel's gradient, registered with the native backend's kernels,
 * takes lse's gradient too), so parts of one softmax over disjoint keys can combine by their
 * log-sum-exps.
 */
export const fusedAttentionWithLse = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, pattern: AttentionPattern): [out: tf.Tensor4D, lse: tf.Tensor3D] | undefined => {
  if (!attentionFusion()) return undefined
  const [out, lse] = tf.engine().runKernel(FUSED_ATTENTION, { q, k, v }, attentionAttrs(q.shape[2], pattern)) as unknown as [tf.Tensor4D, tf.Tensor3D]
  return [out, lse]
}

/** The attention by the fused kernels, or undefined where the backend has none or the switch is off. */
export const fusedAttention = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, pattern: AttentionPattern): tf.Tensor4D | undefined => {
  const both = fusedAttentionWithLse(q, k, v, pattern)
  if (both === undefined) return undefined
  // The tape keeps its own reference to lse for the backward pass.
  both[1].dispose()
  return both[0]
}

/**
 * Newton–Schulz orthogonalisation of a matrix (src/optimizer/newton-schulz.ts gives the
 * iteration): g [rows, cols] in, the result out, each iteration three GEMMs whose scalings and
 * sums ride on their alpha and beta, and a tall matrix iterated on XᵀX rather than transposed.
 * MUON_UPDATE is a whole Muon step (src/optimizer/muon.ts) of a group of matrices, one per
 * thread: inputs p0, g0, m0, p1, … out [p′0, p′1, …, m′0, m′1, …], with scalars
 * [β, 1 − β, 1 − lr·wd, lr·scale] per matrix used as float32 like the composed update's scalar
 * tensors, so the momentum comes out with the same bits.
 */
export const NEWTON_SCHULZ = "NewtonSchulz"
export const MUON_UPDATE = "MuonUpdate"

/** The orthogonalised matrix by the fused kernel, or undefined where the backend has none. */
export const fusedNewtonSchulz = (g: tf.Tensor2D, steps: number, coefficients: readonly number[]): tf.Tensor2D | undefined =>
  available(NEWTON_SCHULZ) && g.dtype === "float32" ? (tf.engine().runKernel(NEWTON_SCHULZ, { g }, { steps, coefficients: [...coefficients] }) as tf.Tensor2D) : undefined

export interface MuonMatrix {
  readonly p: tf.Tensor
  readonly g: tf.Tensor
  readonly m: tf.Tensor
  readonly scalars: readonly number[]
  readonly decay: boolean
}

/** [p′, m′] of each matrix by the fused kernel, or undefined where the backend has none. */
export const fusedMuon = (
  matrices: readonly MuonMatrix[],
  options: { readonly steps: number; readonly coefficients: readonly number[]; readonly nesterov: boolean },
): Array<[p: tf.Tensor, m: tf.Tensor]> | undefined => {
  if (matrices.length === 0 || !available(MUON_UPDATE) || matrices.some(({ g }) => g.dtype !== "float32")) return undefined
  const inputs = Object.fromEntries(matrices.flatMap(({ p, g, m }, i) => [[`p${i}`, p], [`g${i}`, g], [`m${i}`, m]]))
  const attrs = { ...options, coefficients: [...options.coefficients], scalars: matrices.flatMap((q) => q.scalars), decays: matrices.map((q) => q.decay) }
  const out = tf.engine().runKernel(MUON_UPDATE, inputs, attrs) as unknown as tf.Tensor[]
  return matrices.map((_, i) => [out[i]!, out[matrices.length + i]!])
}
