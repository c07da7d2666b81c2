/**
 * Muon (Keller Jordan, "Muon: An optimizer for hidden layers in neural networks", 2024;
 * github.com/KellerJordan/Muon, muon.py `muon_update` and `SingleDeviceMuonWithAuxAdam`): the
 * blocks' hidden matrices take SGD momentum orthogonalised by Newton–Schulz, every other
 * parameter AdamW (src/optimizer/adamw.ts, with its own rate and betas):
 *
 *   m ← β·m + (1 − β)·g
 *   u ← (1 − β)·g + β·m                      (Nesterov; u ← m without)
 *   p ← p·(1 − lr·wd)                        (only for parameters the `decay` predicate selects)
 *   p ← p − lr·√max(1, fan_out/fan_in)·NS(u)
 *
 * Backends with the fused kernel (src/backend/fused.ts) run the matrices' updates as one call,
 * the momentum with the same bits as the composed ops. The state exports as `momentum.<param>`
 * next to the AdamW part's `m.<param>`, `v.<param>`; importing it restores the optimiser bit
 * for bit.
 */
import * as tf from "@tensorflow/tfjs"
import { fusedMuon, type MuonMatrix } from "../backend/fused.js"
import { AdamW, type AdamWConfig } from "./adamw.js"
import { checkUpdate } from "./checks.js"
import type { Optimizer, OptimizerState } from "./compute/compute.js"
import { newtonSchulz, quintic } from "./newton-schulz.js"

/**
 * The reference scales by √max(1, rows/cols) of a PyTorch weight, which is [fan_out, fan_in]
 * (muon.py: `max(1, grad.size(-2) / grad.size(-1))**0.5`). This lab's weights are [fan_in,
 * fan_out] (y = x·W), so the same scale is √max(1, cols/rows).
 */
export const muonScale = (shape: readonly number[]): number => Math.sqrt(Math.max(1, shape[1]! / shape[0]!))

export interface MuonConfig {
  readonly momentum: number
  readonly nesterov: boolean
  /** Newton–Schulz iterations. */
  readonly steps: number
  readonly weightDecay: number
  readonly decay: (name: string) => boolean
  /** Which parameters Muon updates; AdamW updates the rest. */
  readonly orthogonalised: (name: string) => boolean
  readonly adamw: AdamWConfig
  /** The AdamW part's rate at update `step` (counted from 1): its own schedule. */
  readonly adamwLr: (step: number) => number
}

/** The update in tfjs ops, for backends without the fused kernel: [p′, m′]. */
const composedMuon = ({ p, g, m: buffer, scalars, decay }: MuonMatrix, steps: number, nesterov: boolean): [tf.Tensor, tf.Tensor] => {
  const [beta, oneMinusBeta, decayFactor, stepSize] = scalars as [number, number, number, number]
  const m = buffer.mul(beta).add(g.mul(oneMinusBeta))
  const u = nesterov ? g.mul(oneMinusBeta).add(m.mul(beta)) : m
  const decayed = decay ? p.mul(decayFactor) : p
  return [decayed.sub(newtonSchulz(u as tf.Tensor2D, steps).mul(stepSize)), m]
}

export class Muon implements Optimizer {
  private readonly buffers: Record<string, tf.Variable> = {}
  private readonly rest: AdamW
  private t = 0

  constructor(
    private readonly params: Record<string, tf.Variable>,
    private readonly config: MuonConfig,
  ) {
    if (!(Number.isFinite(config.momentum) && config.momentum >= 0 && config.momentum < 1)) throw new Error(`Muon: momentum must be in [0, 1), got ${config.momentum}`)
    if (!(Number.isInteger(config.steps) && config.steps >= 1)) throw new Error(`Muon: steps must be an integer >= 1, got ${config.steps}`)
    if (!(config.weightDecay >= 0)) throw new Error(`Muon: weightDecay must be >= 0, got ${config.weightDecay}`)
    const others: Record<string, tf.Variable> = {}
    for (const [name, p] of Object.entries(params)) {
      if (config.orthogonalised(name)) this.buffers[name] = tf.tidy(() => tf.variable(tf.zerosLike(p), false))
      else others[name] = p
    }
    this.rest = new AdamW(others, config.adamw)
  }

  get step(): number {
    return this.t
  }

  /** One update: `lr` is the matrices' rate; the AdamW part takes its own schedule's at the same step. */
  update(grads: Record<string, tf.Tensor>, lr: number): void {
    checkUpdate("Muon", this.params, grads, lr)
    this.t += 1
    const { momentum: beta, nesterov, steps, weightDecay } = this.config
    const others: Record<string, tf.Tensor> = {}
    const matrices: Array<MuonMatrix & { readonly p: tf.Variable; readonly m: tf.Variable }> = []
    for (const [name, g] of Object.entries(grads)) {
      const m = this.buffers[name]
      if (m === undefined) {
        others[name] = g
        continue
      }
      const p = this.params[name]!
      matrices.push({ p, g, m, scalars: [beta, 1 - beta, 1 - lr * weightDecay, lr * muonScale(p.shape)], decay: weightDecay > 0 && this.config.decay(name) })
    }
    tf.tidy(() => {
      const updated = fusedMuon(matrices, { steps, coefficients: quintic, nesterov }) ?? matrices.map((q) => composedMuon(q, steps, nesterov))
      updated.forEach(([next, m], i) => {
        matrices[i]!.m.assign(m)
        matrices[i]!.p.assign(next)
      })
    })
    this.rest.update(others, this.config.adamwLr(this.t))
  }

  exportState(): OptimizerState {
    const moments: Record<string, { shape: readonly number[]; data: Float32Array }> = { ...this.rest.exportState().moments }
    // Copies: on the CPU backend dataSync() exposes the backend's own buffer.
    for (const [name, b] of Object.entries(this.buffers)) moments[`momentum.${name}`] = { shape: b.shape, data: (b.dataSync() as Float32Array).slice() }
    return { step: this.t, moments }
  }

  /** Restores a state from `exportState`: every matrix's momentum and the AdamW part's moments. */
  importState(state: OptimizerState): void {
    if (!(Number.isInteger(state.step) && state.step >= 0)) throw new Error(`Muon: bad step count ${state.step}`)
    const own = Object.keys(state.moments).filter((k) => k.startsWith("momentum."))
    for (const key of own) {
      if (this.buffers[key.slice("momentum.".length)] === undefined) throw new Error(`Muon: state has "${key}", which matches no matrix Muon updates`)
    }
    for (const [name, b] of Object.entries(this.buffers)) {
      const entry = state.moments[`momentum.${name}`]
      if (entry === undefined) throw new Error(`Muon: state lacks "momentum.${name}"`)
      if (!tf.util.arraysEqual([...entry.shape], b.shape) || entry.data.length !== b.size) throw new Error(`Muon: "momentum.${name}" has shape [${entry.shape}], parameter has [${b.shape}]`)
    }
    this.rest.importState({ step: state.step, moments: Object.fromEntries(Object.entries(state.moments).filter(([k]) => !k.startsWith("momentum."))) })
    // Copied so the caller's array never becomes the backend's storage.
    for (const [name, b] of Object.entries(this.buffers)) tf.tidy(() => b.assign(tf.tensor(state.moments[`momentum.${name}`]!.data.slice(), b.shape, "float32")))
    this.t = state.step
  }

  dispose(): void {
    for (const b of Object.values(this.buffers)) b.dispose()
    this.rest.dispose()
  }
}
