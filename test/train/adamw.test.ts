import * as tf from "@tensorflow/tfjs"
import { beforeAll, describe, expect, it } from "vitest"
import { AdamW, type AdamWConfig, GradientAccumulator, clipByGlobalNorm } from "../../src/optimizer/adamw.js"
import { Rng } from "../../src/random/rng.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
  await tf.ready()
})

const config: AdamWConfig = {
  beta1: 0.9,
  beta2: 0.95,
  eps: 1e-8,
  weightDecay: 0.1,
  decay: (name, shape) => shape.length >= 2 && name !== "embed",
}

const shapes: Record<string, number[]> = { w: [3, 4], embed: [5, 2], b: [4] }
const randomArray = (rng: Rng, n: number, scale = 1) => Float32Array.from({ length: n }, () => scale * rng.nextNormal())
const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1)

/** torch.optim.AdamW's single-tensor update, written out per scalar in float64. */
const referenceAdamW = (
  p: number[],
  m: number[],
  v: number[],
  g: ArrayLike<number>,
  t: number,
  lr: number,
  decay: boolean,
) => {
  const { beta1, beta2, eps, weightDecay } = config
  for (let i = 0; i < p.length; i++) {
    if (decay) p[i] *= 1 - lr * weightDecay
    m[i] = beta1 * m[i] + (1 - beta1) * g[i]
    v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i]
    const denom = Math.sqrt(v[i]) / Math.sqrt(1 - beta2 ** t) + eps
    p[i] -= (lr / (1 - beta1 ** t)) * (m[i] / denom)
  }
}

const makeParams = (rng: Rng) =>
  Object.fromEntries(Object.entries(shapes).map(([n, s]) => [n, tf.variable(tf.tensor(randomArray(rng, size(s)), s))]))

describe("AdamW", () => {
  it("matches a scalar float64 implementation of torch.optim.AdamW over several steps", () => {
    const rng = Rng.fromSeed(11)
    const params = makeParams(rng)
    const ref = Object.fromEntries(
      Object.entries(params).map(([n, p]) => [
        n,
        { p: Array.from(p.dataSync()), m: Array(p.size).fill(0), v: Array(p.size).fill(0) },
      ]),
    )
    const opt = new AdamW(params, config)
    const lrs = [1e-3, 3e-3, 1e-2, 5e-3, 2e-3, 1e-3]
    lrs.forEach((lr, k) => {
      const gradData = Object.fromEntries(Object.entries(shapes).map(([n, s]) => [n, randomArray(rng, size(s), 0.5)]))
      // "b" gets no gradient on the third step: it must stay put while the step count advances.
      const names = Object.keys(shapes).filter((n) => !(k === 2 && n === "b"))
      const grads = Object.fromEntries(names.map((n) => [n, tf.tensor(gradData[n], shapes[n])]))
      opt.update(grads, lr)
      Object.values(grads).forEach((g) => g.dispose())
      for (const n of names) referenceAdamW(ref[n].p, ref[n].m, ref[n].v, gradData[n], k + 1, lr, config.decay(n, shapes[n]))
    })
    expect(opt.step).toBe(lrs.length)
    for (const [n, p] of Object.entries(params)) {
      const got = p.dataSync()
      ref[n].p.forEach((x, i) => expect(Math.abs(got[i] - x)).toBeLessThan(2e-6 * Math.max(1, Math.abs(x))))
    }
    opt.dispose()
    Object.values(params).forEach((p) => p.dispose())
  })

  it("decays only the parameters the predicate selects", () => {
    const w = tf.variable(tf.tensor([[2]]))
    const embed = tf.variable(tf.tensor([[2]]))
    const opt = new AdamW({ w, embed }, config)
    const zero = tf.zeros([1, 1])
    opt.update({ w: zero, embed: zero }, 0.5)
    // Zero gradient: the Adam term is 0, leaving only decoupled decay 2·(1 − 0.5·0.1) = 1.9.
    expect(w.dataSync()[0]).toBeCloseTo(1.9, 6)
    expect(embed.dataSync()[0]).toBe(2)
    tf.dispose([w, embed, zero])
    opt.dispose()
  })

  it("resumes bit-exactly from exported state", () => {
    const rng = Rng.fromSeed(5)
    const grads = Array.from({ length: 6 }, () =>
      Object.fromEntries(Object.entries(shapes).map(([n, s]) => [n, randomArray(rng, size(s))])),
    )
    const apply = (opt: AdamW, k: number) => {
      const g = Object.fromEntries(Object.entries(grads[k]).map(([n, d]) => [n, tf.tensor(d, shapes[n])]))
      opt.update(g, 1e-2)
      tf.dispose(Object.values(g))
    }
    const paramsA = makeParams(Rng.fromSeed(1))
    const a = new AdamW(paramsA, config)
    for (let k = 0; k < 3; k++) apply(a, k)
    const exported = a.exportState()
    const paramsB = Object.fromEntries(Object.entries(paramsA).map(([n, p]) => [n, tf.variable(tf.tensor(p.dataSync(), p.shape))]))
    const b = new AdamW(paramsB, config)
    b.importState(exported)
    expect(b.step).toBe(3)
    for (let k = 3; k < 6; k++) {
      apply(a, k)
      apply(b, k)
    }
    for (const n of Object.keys(shapes)) expect(paramsB[n].dataSync()).toEqual(paramsA[n].dataSync())
    expect(b.exportState()).toEqual(a.exportState())
    expect(() => b.importState({ step: 1, moments: { ...exported.moments, "m.nope": exported.moments["m.w"] } })).toThrow(
      /"m\.nope", which matches no parameter/,
    )
    tf.dispose([...Object.values(paramsA), ...Object.values(paramsB)])
    a.dispose()
    b.dispose()
  })

  it("rejects mismatched gradients and bad hyper-parameters", () => {
    const w = tf.variable(tf.zeros([2, 2]))
    const opt = new AdamW({ w }, config)
    const g = tf.zeros([2])
    expect(() => opt.update({ w: g }, 1e-3)).toThrow(/gradient for "w" has shape \[2\], parameter has \[2,2\]/)
    expect(() => opt.update({ x: g }, 1e-3)).toThrow(/unknown parameter "x"/)
    expect(() => opt.update({}, NaN)).toThrow(/learning rate/)
    expect(() => new AdamW({ w }, { ...config, beta2: 1 })).toThrow(/beta2 must be in \[0, 1\)/)
    tf.dispose([w, g])
    opt.dispose()
  })

  it("keeps the tensor count flat over many steps with clipping and accumulation", () => {
    const rng = Rng.fromSeed(3)
    const params = makeParams(rng)
    const opt = new AdamW(params, config)
    const acc = new GradientAccumulator()
    const step = () => {
      for (let micro = 0; micro < 2; micro++) {
        const g = tf.tidy(() => Object.fromEntries(Object.entries(params).map(([n, p]) => [n, p.mul(0.5)])))
        acc.add(g)
        tf.dispose(Object.values(g))
      }
      const mean = acc.mean()
      acc.reset()
      const { grads } = clipByGlobalNorm(mean, 1)
      tf.dispose(Object.values(mean))
      opt.update(grads, 1e-3)
      tf.dispose(Object.values(grads))
    }
    step()
    const before = tf.memory().numTensors
    for (let i = 0; i < 200; i++) step()
    expect(tf.memory().numTensors).toBe(before)
    opt.dispose()
    tf.dispose(Object.values(params))
  })
})

describe("clipByGlobalNorm", () => {
  it("scales by maxNorm / (norm + 1e-6) when the global norm exceeds maxNorm", () => {
    const grads = { a: tf.tensor([3, 4]), b: tf.tensor([[12]]) }
    const clipped = clipByGlobalNorm(grads, 6.5)
    expect(clipped.norm).toBe(13) // √(9 + 16 + 144)
    const coef = 6.5 / (13 + 1e-6)
    const a = clipped.grads.a.dataSync()
    expect(a[0]).toBeCloseTo(3 * coef, 6)
    expect(a[1]).toBeCloseTo(4 * coef, 6)
    expect(clipped.grads.b.dataSync()[0]).toBeCloseTo(12 * coef, 5)
    expect(clipped.grads.b.shape).toEqual([1, 1])
    const untouched = clipByGlobalNorm(grads, 20)
    expect(Array.from(untouched.grads.a.dataSync())).toEqual([3, 4])
    expect(() => clipByGlobalNorm(grads, 0)).toThrow(/maxNorm must be positive/)
    tf.dispose([...Object.values(grads), ...Object.values(clipped.grads), ...Object.values(untouched.grads)])
  })
})

describe("GradientAccumulator", () => {
  it("averages micro-batch gradients and insists on the same parameter set", () => {
    const acc = new GradientAccumulator()
    const g1 = { w: tf.tensor([1, 2]) }
    const g2 = { w: tf.tensor([3, 6]) }
    acc.add(g1)
    acc.add(g2)
    expect(acc.microBatches).toBe(2)
    const mean = acc.mean()
    expect(Array.from(mean.w.dataSync())).toEqual([2, 4])
    expect(() => acc.add({ v: g1.w })).toThrow(/gradients for \{v\}, earlier ones for \{w\}/)
    acc.reset()
    expect(() => acc.mean()).toThrow(/no micro-batches/)
    tf.dispose([g1.w, g2.w, mean.w])
  })
})
