import * as tf from "@tensorflow/tfjs"
import { beforeAll, describe, expect, it } from "vitest"
import { hiddenMatchLoss } from "../../src/objective/hidden.js"
import { Rng } from "../../src/random/rng.js"

/** Hidden-state matching against a float64 computation and central differences of it. */
beforeAll(async () => {
  await tf.setBackend("cpu")
})

const [b, t, ds, dt] = [2, 3, 4, 5]
const rng = Rng.fromSeed(21)
const draw = (n: number) => Array.from({ length: n }, () => Math.fround(rng.nextNormal()))
const student = draw(b * t * ds)
const teacher = draw(b * t * dt)
const projection = draw(ds * dt)
const weights = [1, 1, 0, 1, 0, 1]

/** The loss in float64: rows of student·P against rows of teacher, weighted w/Σw. */
const naive = (s: number[], p: number[] | undefined, kind: "cosine" | "mse"): number => {
  const wsum = weights.reduce((a, w) => a + w, 0)
  let total = 0
  for (let r = 0; r < b * t; r++) {
    const x = s.slice(r * ds, (r + 1) * ds)
    const y = p ? Array.from({ length: dt }, (_, j) => x.reduce((a, xi, i) => a + xi * p[i * dt + j]!, 0)) : x
    const h = teacher.slice(r * dt, (r + 1) * dt)
    const row =
      kind === "mse"
        ? y.reduce((a, yi, j) => a + (yi - h[j]!) ** 2, 0) / dt
        : 1 - y.reduce((a, yi, j) => a + yi * h[j]!, 0) / Math.sqrt(y.reduce((a, v) => a + v * v, 0) * h.reduce((a, v) => a + v * v, 0))
    total += (weights[r]! / wsum) * row
  }
  return total
}

describe("hidden-state matching", () => {
  it.each(["cosine", "mse"] as const)("%s with a projection: value and gradients of student and projection", (kind) => {
    const before = tf.memory().numTensors
    const { value, grads } = tf.tidy(() => {
      const f = (s: tf.Tensor, p: tf.Tensor) => hiddenMatchLoss(s as tf.Tensor3D, tf.tensor3d(teacher, [b, t, dt]), p as tf.Tensor2D, tf.tensor1d(weights), kind)
      const { value, grads } = tf.valueAndGrads(f)([tf.tensor3d(student, [b, t, ds]), tf.tensor2d(projection, [ds, dt])])
      return { value: value.dataSync()[0]!, grads: grads.map((g) => Array.from(g.dataSync())) }
    })
    expect(tf.memory().numTensors).toBe(before)
    expect(Math.abs(value - naive(student, projection, kind))).toBeLessThan(1e-6)
    const h = 1e-6
    const fd = (xs: number[], at: (v: number[]) => number) =>
      xs.map((_, i) => {
        const up = [...xs]
        const down = [...xs]
        up[i]! += h
        down[i]! -= h
        return (at(up) - at(down)) / (2 * h)
      })
    const want = [fd(student, (s) => naive(s, projection, kind)), fd(projection, (p) => naive(student, p, kind))]
    want.forEach((w, k) => {
      const largest = Math.max(...w.map(Math.abs))
      expect(largest).toBeGreaterThan(1e-3)
      w.forEach((g, i) => expect(Math.abs(grads[k]![i]! - g)).toBeLessThan(1e-4 * largest + 1e-7))
    })
    // Padded positions pull on nothing.
    for (const r of [2, 4]) expect(grads[0]!.slice(r * ds, (r + 1) * ds).every((g) => g === 0)).toBe(true)
  })

  it("without a projection when the widths match", () => {
    const same = teacher.slice(0, b * t * ds)
    const value = tf.tidy(() => hiddenMatchLoss(tf.tensor3d(student, [b, t, ds]), tf.tensor3d(same, [b, t, ds]), undefined, tf.tensor1d(weights), "mse").dataSync()[0]!)
    let want = 0
    for (let r = 0; r < b * t; r++) for (let j = 0; j < ds; j++) want += (weights[r]! / 4) * ((student[r * ds + j]! - same[r * ds + j]!) ** 2 / ds)
    expect(value).toBeCloseTo(want, 6)
  })
})
