import * as tf from "@tensorflow/tfjs"
import { afterAll, describe, expect, it } from "vitest"
import { crossEntropy } from "../../src/model/loss.js"
import { type Divergence, distillationLoss } from "../../src/objective/distill-loss.js"
import { Rng } from "../../src/random/rng.js"
import { peakMeter } from "../../src/backend/peak-memory.js"
import { describeNative, nativeStatus } from "../backend/native-suite.js"

/**
 * The distillation loss against a float64 computation written out loop by loop, its gradient
 * against central differences of that computation, and the T² scaling against its
 * high-temperature limit, on stock cpu (composed ops) and, where the addon loads, on the
 * native backend (fused kernels).
 */
interface Case {
  readonly n: number
  readonly v: number
  readonly s: Float64Array
  readonly t: Float64Array
  readonly targets: number[]
  readonly weights: number[]
}

const makeCase = (seed: number, n = 7, v = 23): Case => {
  const rng = Rng.fromSeed(seed)
  const s = Float64Array.from({ length: n * v }, () => Math.fround(2 * rng.nextNormal()))
  const t = Float64Array.from({ length: n * v }, () => Math.fround(3 * rng.nextNormal()))
  return { n, v, s, t, targets: Array.from({ length: n }, () => rng.nextInt(v)), weights: Array.from({ length: n }, (_, i) => (i % 3 === 2 ? 0 : 1)) }
}

const logSoftmax64 = (row: ArrayLike<number>, invT: number): number[] => {
  const z = Array.from(row, (x) => x * invT)
  const m = Math.max(...z)
  const lse = m + Math.log(z.reduce((a, x) => a + Math.exp(x - m), 0))
  return z.map((x) => x - lse)
}

const kl64 = (logp: number[], logq: number[]): number => logp.reduce((a, lp, j) => a + Math.exp(lp) * (lp - logq[j]!), 0)

/** α·CE + (1 − α)·T²·KL, each row weighted w/Σw, in float64. */
const naive = (c: Case, s: Float64Array, T: number, alpha: number, divergence: Divergence): number => {
  const wsum = Math.max(1, c.weights.reduce((a, b) => a + b, 0))
  let total = 0
  for (let i = 0; i < c.n; i++) {
    const si = s.subarray(i * c.v, (i + 1) * c.v)
    const ti = c.t.subarray(i * c.v, (i + 1) * c.v)
    const ce = -logSoftmax64(si, 1)[c.targets[i]!]!
    const ls = logSoftmax64(si, 1 / T)
    const lt = logSoftmax64(ti, 1 / T)
    const kl = divergence === "forward-kl" ? kl64(lt, ls) : kl64(ls, lt)
    total += (c.weights[i]! / wsum) * (alpha * ce + (1 - alpha) * T * T * kl)
  }
  return total
}

const lossOf = (c: Case, T: number, alpha: number, divergence: Divergence) => (x: tf.Tensor) =>
  distillationLoss(x as tf.Tensor2D, tf.tensor1d(c.targets, "int32"), tf.tensor1d(c.weights), { teacher: tf.tensor2d(Float32Array.from(c.t), [c.n, c.v]), temperature: T, alpha, divergence })

const valueAndGrad = (c: Case, T: number, alpha: number, divergence: Divergence): { value: number; grad: Float32Array } =>
  tf.tidy(() => {
    const { value, grad } = tf.valueAndGrad(lossOf(c, T, alpha, divergence))(tf.tensor2d(Float32Array.from(c.s), [c.n, c.v]))
    return { value: value.dataSync()[0]!, grad: grad.dataSync() as Float32Array }
  })

const backends = ["cpu", ...(nativeStatus.available ? ["native"] : [])]
afterAll(async () => {
  await tf.setBackend("cpu")
})

const settings: Array<[number, number, Divergence]> = [
  [1, 0.5, "forward-kl"],
  [2, 0, "forward-kl"],
  [4, 0.3, "forward-kl"],
  [0.5, 0.7, "forward-kl"],
  [1, 0, "reverse-kl"],
  [2, 0.5, "reverse-kl"],
  [4, 1, "reverse-kl"],
]

describe.each(backends)("distillation loss on %s", (backend) => {
  it("equals the float64 computation, and its gradient equals central differences of it", async () => {
    await tf.setBackend(backend)
    const before = tf.memory().numTensors
    for (const [k, [T, alpha, divergence]] of settings.entries()) {
      const c = makeCase(10 + k)
      const label = `T=${T} α=${alpha} ${divergence}`
      const { value, grad } = valueAndGrad(c, T, alpha, divergence)
      const want = naive(c, c.s, T, alpha, divergence)
      expect(Math.abs(value - want), label).toBeLessThan(2e-6 * Math.max(1, Math.abs(want)))
      const h = 1e-5
      let worst = 0
      let largest = 0
      for (let j = 0; j < c.s.length; j++) {
        const up = Float64Array.from(c.s)
        const down = Float64Array.from(c.s)
        up[j]! += h
        down[j]! -= h
        const fd = (naive(c, up, T, alpha, divergence) - naive(c, down, T, alpha, divergence)) / (2 * h)
        worst = Math.max(worst, Math.abs(grad[j]! - fd))
        largest = Math.max(largest, Math.abs(fd))
      }
      expect(largest, label).toBeGreaterThan(1e-3)
      expect(worst, label).toBeLessThan(2e-4 * largest)
      // Padded rows (weight 0) get no gradient.
      for (let i = 2; i < c.n; i += 3) expect(Array.from(grad.subarray(i * c.v, (i + 1) * c.v)).every((g) => g === 0), label).toBe(true)
    }
    expect(tf.memory().numTensors).toBe(before)
  })

  it("scales the soft term by T²: the loss is T² times the divergence, and at high T the gradient is logit matching", async () => {
    await tf.setBackend(backend)
    const c = makeCase(3)
    for (const T of [0.5, 2, 4]) {
      const kl = naive(c, c.s, T, 0, "forward-kl") / (T * T)
      expect(valueAndGrad(c, T, 0, "forward-kl").value / kl).toBeCloseTo(T * T, 4)
    }
    // T·(p_s − p_t) → ((s − s̄) − (t − t̄))/V as T → ∞, per row weighted w/Σw.
    const T = 1000
    const { grad } = valueAndGrad(c, T, 0, "forward-kl")
    const wsum = c.weights.reduce((a, b) => a + b, 0)
    let worst = 0
    let largest = 0
    for (let i = 0; i < c.n; i++) {
      const si = Array.from(c.s.subarray(i * c.v, (i + 1) * c.v))
      const ti = Array.from(c.t.subarray(i * c.v, (i + 1) * c.v))
      const sm = si.reduce((a, b) => a + b, 0) / c.v
      const tm = ti.reduce((a, b) => a + b, 0) / c.v
      for (let j = 0; j < c.v; j++) {
        const limit = (c.weights[i]! / wsum) * ((si[j]! - sm - (ti[j]! - tm)) / c.v)
        worst = Math.max(worst, Math.abs(grad[i * c.v + j]! - limit))
        largest = Math.max(largest, Math.abs(limit))
      }
    }
    expect(largest).toBeGreaterThan(1e-3)
    expect(worst).toBeLessThan(1e-2 * largest)
  })

  it("with α = 1 has exactly the plain cross-entropy's value and gradient bits", async () => {
    await tf.setBackend(backend)
    for (const divergence of ["forward-kl", "reverse-kl"] as const) {
      const c = makeCase(5, 16, 301)
      const x = () => tf.tensor2d(Float32Array.from(c.s), [c.n, c.v])
      const plain = tf.tidy(() => {
        const { value, grad } = tf.valueAndGrad((l: tf.Tensor) => crossEntropy(l as tf.Tensor2D, tf.tensor1d(c.targets, "int32"), tf.tensor1d(c.weights)))(x())
        return [value.dataSync()[0]!, ...grad.dataSync()]
      })
      const { value, grad } = valueAndGrad(c, 2, 1, divergence)
      expect([value, ...grad]).toEqual(plain)
    }
  })
})

describeNative("fused distillation loss memory", () => {
  it("holds no [N, V] tensor beyond the plain loss's gradient, only a few numbers per position", async () => {
    await tf.setBackend("native")
    const [n, v] = [128, 4096]
    const rng = Rng.fromSeed(4)
    const logits = tf.tensor2d(Float32Array.from({ length: n * v }, () => rng.nextNormal()), [n, v])
    const teacher = tf.tensor2d(Float32Array.from({ length: n * v }, () => rng.nextNormal()), [n, v])
    const targets = tf.tensor1d(Array.from({ length: n }, (_, i) => (i * 31) % v), "int32")
    const weights = tf.ones([n]) as tf.Tensor1D
    const meter = peakMeter()!
    const peakOf = (loss: (x: tf.Tensor) => tf.Scalar): number => {
      meter.start()
      tf.tidy(() => tf.grad(loss)(logits).dataSync())
      return meter.peakAbove()
    }
    const plain = peakOf((x) => crossEntropy(x as tf.Tensor2D, targets, weights))
    for (const divergence of ["forward-kl", "reverse-kl"] as const) {
      const distilled = peakOf((x) => distillationLoss(x as tf.Tensor2D, targets, weights, { teacher, temperature: 2, alpha: 0.5, divergence }))
      expect(plain).toBeGreaterThanOrEqual(n * v * 4)
      expect(distilled - plain).toBeLessThanOrEqual(8 * n * 4)
    }
    tf.dispose([logits, teacher, targets, weights])
  })
})
