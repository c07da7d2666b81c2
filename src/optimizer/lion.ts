/**
 * Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms", Algorithm 2; the
 * order of its reference implementation, google/automl lion_pytorch.py):
 *
 *   p ← p·(1 − lr·wd)                       (only for parameters the `decay` predicate selects)
 *   p ← p − lr·sign(β1·m + (1 − β1)·g)       (sign(0) = 0)
 *   m ← β2·m + (1 − β2)·g
 *
 * One moment per parameter, in a tf.Variable exported as `m.<param>` for checkpoints (the
 * name AdamW's first moment has, so a derived run carries it the same way); importing it
 * restores the optimiser bit for bit.
 */
import * as tf from "@tensorflow/tfjs"
import type { TensorArrays } from "../train/checkpoint.js"
import { checkUnit, checkUpdate } from "./checks.js"
import type { Optimizer, OptimizerState } from "./compute/compute.js"

export interface LionConfig {
  readonly beta1: number
  readonly beta2: number
  readonly weightDecay: number
  /** Whether a parameter receives weight decay, as under AdamW. */
  readonly decay: (name: string) => boolean
}

export class Lion implements Optimizer {
  private readonly m: Record<string, tf.Variable> = {}
  private t = 0

  constructor(
    private readonly params: Record<string, tf.Variable>,
    private readonly config: LionConfig,
  ) {
    checkUnit("Lion", "beta1", config.beta1)
    checkUnit("Lion", "beta2", config.beta2)
    if (!(config.weightDecay >= 0)) throw new Error(`Lion: weightDecay must be >= 0, got ${config.weightDecay}`)
    for (const [name, p] of Object.entries(params)) this.m[name] = tf.tidy(() => tf.variable(tf.zerosLike(p), false))
  }

  get step(): number {
    return this.t
  }

  /** One update at rate `lr`; parameters without a gradient are left alone, the step count advances once per call. */
  update(grads: Record<string, tf.Tensor>, lr: number): void {
    checkUpdate("Lion", this.params, grads, lr)
    this.t += 1
    const { beta1, beta2, weightDecay } = this.config
    tf.tidy(() => {
      for (const [name, g] of Object.entries(grads)) {
        const p = this.params[name]!
        const m = this.m[name]!
        const direction = tf.sign(m.mul(beta1).add(g.mul(1 - beta1)))
        const decayed = weightDecay > 0 && this.config.decay(name) ? p.mul(1 - lr * weightDecay) : p
        p.assign(decayed.sub(direction.mul(lr)))
        m.assign(m.mul(beta2).add(g.mul(1 - beta2)))
      }
    })
  }

  /** Copies of the moments: on the CPU backend dataSync() exposes the backend's own buffer. */
  exportState(): OptimizerState {
    const moments: TensorArrays = Object.fromEntries(Object.entries(this.m).map(([name, m]) => [`m.${name}`, { shape: m.shape, data: (m.dataSync() as Float32Array).slice() }]))
    return { step: this.t, moments }
  }

  /** Restores a state from `exportState`: every parameter's moment, with its shape, and nothing else. */
  importState(state: OptimizerState): void {
    if (!(Number.isInteger(state.step) && state.step >= 0)) throw new Error(`Lion: bad step count ${state.step}`)
    for (const key of Object.keys(state.moments)) {
      if (!key.startsWith("m.") || this.m[key.slice(2)] === undefined) throw new Error(`Lion: state has "${key}", which matches no parameter's moment`)
    }
    for (const [name, m] of Object.entries(this.m)) {
      const entry = state.moments[`m.${name}`]
      if (entry === undefined) throw new Error(`Lion: state lacks "m.${name}"`)
      if (!tf.util.arraysEqual([...entry.shape], m.shape) || entry.data.length !== m.size) throw new Error(`Lion: "m.${name}" has shape [${entry.shape}], parameter has [${m.shape}]`)
    }
    // Copied so the caller's array never becomes the backend's storage.
    for (const [name, m] of Object.entries(this.m)) tf.tidy(() => m.assign(tf.tensor(state.moments[`m.${name}`]!.data.slice(), m.shape, "float32")))
    this.t = state.step
  }

  dispose(): void {
    for (const m of Object.values(this.m)) m.dispose()
  }
}
