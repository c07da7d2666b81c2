/**
 * AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization") with the exact update
 * order of PyTorch's torch.optim.AdamW, so runs compare with reference implementations:
 *
 *   p ← p·(1 − lr·wd)                       (only for parameters the `decay` predicate selects)
 *   m ← β1·m + (1 − β1)·g
 *   v ← β2·v + (1 − β2)·g²
 *   p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + ε)
 *
 * The moments live in tf.Variables next to the parameters and export to plain Float32Arrays
 * (named `m.<param>` and `v.<param>`) for checkpoints; importing them restores the optimiser
 * bit for bit. Backends with the fused kernel (src/backend/fused.ts) run each parameter's
 * update as one pass, with the same bits as the composed ops.
 */
import * as tf from "@tensorflow/tfjs"
import { fusedAdamW } from "../backend/fused.js"
import type { TensorArrays } from "../train/checkpoint.js"
import { checkUnit, checkUpdate } from "./checks.js"

export interface AdamWConfig {
  readonly beta1: number
  readonly beta2: number
  readonly eps: number
  readonly weightDecay: number
  /** Whether a parameter receives weight decay; usually matrices but not embeddings, norm gains or biases. */
  readonly decay: (name: string, shape: readonly number[]) => boolean
}

/** The optimiser's mutable state as plain data: step count and moments keyed `m.<name>`, `v.<name>`. */
export interface AdamWState {
  readonly step: number
  readonly moments: TensorArrays
}

/**
 * The update in tfjs ops, for backends without the fused kernel: the same float32 operations
 * in the same order, so the two give the same bits.
 */
const composedAdamW = (
  { p, g, m, v }: { readonly p: tf.Tensor; readonly g: tf.Tensor; readonly m: tf.Tensor; readonly v: tf.Tensor },
  scalars: readonly number[],
  decays: boolean,
): [tf.Tensor, tf.Tensor, tf.Tensor] => {
  const [beta1, oneMinusBeta1, beta2, oneMinusBeta2, decayFactor, bias2Sqrt, eps, stepSize] = scalars as [number, number, number, number, number, number, number, number]
  const m1 = m.mul(beta1).add(g.mul(oneMinusBeta1))
  const v1 = v.mul(beta2).add(g.square().mul(oneMinusBeta2))
  const decayed = decays ? p.mul(decayFactor) : p
  const denom = v1.sqrt().div(bias2Sqrt).add(eps)
  return [decayed.sub(m1.div(denom).mul(stepSize)), m1, v1]
}

export class AdamW {
  private readonly m: Record<string, tf.Variable> = {}
  private readonly v: Record<string, tf.Variable> = {}
  private t = 0

  constructor(
    private readonly params: Record<string, tf.Variable>,
    private readonly config: AdamWConfig,
  ) {
    checkUnit("AdamW", "beta1", config.beta1)
    checkUnit("AdamW", "beta2", config.beta2)
    if (!(config.eps > 0)) throw new Error(`AdamW: eps must be positive, got ${config.eps}`)
    if (!(config.weightDecay >= 0)) throw new Error(`AdamW: weightDecay must be >= 0, got ${config.weightDecay}`)
    for (const [name, p] of Object.entries(params)) {
      this.m[name] = tf.tidy(() => tf.variable(tf.zerosLike(p), false))
      this.v[name] = tf.tidy(() => tf.variable(tf.zerosLike(p), false))
    }
  }

  /** Number of updates applied so far. */
  get step(): number {
    return this.t
  }

  /**
   * Applies one update with learning rate `lr`. Parameters without a gradient are left alone
   * (as in PyTorch, where `grad is None`); the step count advances once per call.
   */
  update(grads: Record<string, tf.Tensor>, lr: number): void {
    checkUpdate("AdamW", this.params, grads, lr)
    this.t += 1
    const { beta1, beta2, eps, weightDecay } = this.config
    const stepSize = lr / (1 - beta1 ** this.t)
    const bias2Sqrt = Math.sqrt(1 - beta2 ** this.t)
    const scalars = [beta1, 1 - beta1, beta2, 1 - beta2, 1 - lr * weightDecay, bias2Sqrt, eps, stepSize]
    tf.tidy(() => {
      for (const [name, g] of Object.entries(grads)) {
        const p = this.params[name]
        const decays = weightDecay > 0 && this.config.decay(name, p.shape)
        const inputs = { p, g, m: this.m[name], v: this.v[name] }
        const [next, m, v] = fusedAdamW(inputs, scalars, decays) ?? composedAdamW(inputs, scalars, decays)
        this.m[name].assign(m)
        this.v[name].assign(v)
        p.assign(next)
      }
    })
  }

  /** Copies of the moments: on the CPU backend dataSync() exposes the backend's own buffer. */
  exportState(): AdamWState {
    const moments: Record<string, { shape: readonly number[]; data: Float32Array }> = {}
    for (const name of Object.keys(this.params)) {
      moments[`m.${name}`] = { shape: this.m[name].shape, data: (this.m[name].dataSync() as Float32Array).slice() }
      moments[`v.${name}`] = { shape: this.v[name].shape, data: (this.v[name].dataSync() as Float32Array).slice() }
    }
    return { step: this.t, moments }
  }

  /** Restores a state from `exportState`; every parameter's moments must be present with its shape. */
  importState(state: AdamWState): void {
    if (!(Number.isInteger(state.step) && state.step >= 0)) throw new Error(`AdamW: bad step count ${state.step}`)
    const expected = new Set(Object.keys(this.params).flatMap((n) => [`m.${n}`, `v.${n}`]))
    for (const key of Object.keys(state.moments)) {
      if (!expected.has(key)) throw new Error(`AdamW: state has "${key}", which matches no parameter`)
    }
    for (const [name, p] of Object.entries(this.params)) {
      for (const [key, target] of [
        [`m.${name}`, this.m[name]],
        [`v.${name}`, this.v[name]],
      ] as const) {
        const entry = state.moments[key]
        if (entry === undefined) throw new Error(`AdamW: state lacks "${key}"`)
        if (!tf.util.arraysEqual([...entry.shape], p.shape) || entry.data.length !== p.size) {
          throw new Error(`AdamW: "${key}" has shape [${entry.shape}], parameter has [${p.shape}]`)
        }
        // Copied so the caller's array never becomes the backend's storage.
        tf.tidy(() => target.assign(tf.tensor(entry.data.slice(), p.shape, "float32")))
      }
    }
    this.t = state.step
  }

  dispose(): void {
    for (const x of [...Object.values(this.m), ...Object.values(this.v)]) x.dispose()
  }
}

/**
 * Scales gradients so their global L2 norm is at most `maxNorm`, as torch.nn.utils.clip_grad_norm_
 * does (coefficient maxNorm / (norm + 1e-6), applied only when below 1). Returns new tensors the
 * caller owns, and the norm before clipping.
 */
export const clipByGlobalNorm = (
  grads: Record<string, tf.Tensor>,
  maxNorm: number,
): { readonly grads: Record<string, tf.Tensor>; readonly norm: number } => {
  if (!(maxNorm > 0)) throw new Error(`clipByGlobalNorm: maxNorm must be positive, got ${maxNorm}`)
  const names = Object.keys(grads)
  const norm =
    names.length === 0
      ? 0
      : tf.tidy(() => tf.sqrt(tf.addN(names.map((n) => grads[n].square().sum()))).dataSync()[0]!)
  const coef = Math.min(1, maxNorm / (norm + 1e-6))
  const clipped = tf.tidy(() => Object.fromEntries(names.map((n) => [n, grads[n].mul(coef)])))
  return { grads: clipped, norm }
}

/** Sums gradients over micro-batches and yields their mean, for gradient accumulation. */
export class GradientAccumulator {
  private sums: Record<string, tf.Tensor> = {}
  private count = 0

  get microBatches(): number {
    return this.count
  }

  /** Adds one micro-batch's gradients; the caller keeps ownership of `grads`. */
  add(grads: Record<string, tf.Tensor>): void {
    if (this.count > 0) {
      const a = Object.keys(this.sums).sort().join(","), b = Object.keys(grads).sort().join(",")
      if (a !== b) throw new Error(`GradientAccumulator: micro-batch has gradients for {${b}}, earlier ones for {${a}}`)
    }
    for (const [name, g] of Object.entries(grads)) {
      const old = this.sums[name]
      this.sums[name] = old === undefined ? g.clone() : tf.tidy(() => old.add(g))
      old?.dispose()
    }
    this.count += 1
  }

  /** The mean gradient over the micro-batches added since the last reset (new tensors the caller owns). */
  mean(): Record<string, tf.Tensor> {
    if (this.count === 0) throw new Error("GradientAccumulator: no micro-batches were added")
    const n = this.count
    return tf.tidy(() => Object.fromEntries(Object.entries(this.sums).map(([name, s]) => [name, s.div(n)])))
  }

  /** Disposes the sums and starts a new accumulation. */
  reset(): void {
    for (const s of Object.values(this.sums)) s.dispose()
    this.sums = {}
    this.count = 0
  }
}
