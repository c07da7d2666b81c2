import * as tf from "@tensorflow/tfjs"
import { describe, expect, it } from "vitest"
import { BufferPool, sizeClass } from "../../src/backend/native/pool.js"
import { withVaryingRows } from "../../src/backend/varying-rows.js"
import { Rng } from "../../src/random/rng.js"
import { compareBackends, normal } from "./compare.js"
import { describeNative } from "./native-suite.js"

describe("size classes", () => {
  it("round up by at most a sixteenth, never down, and keep small lengths exact", () => {
    const rng = Rng.fromSeed(3)
    for (let i = 0; i < 2000; i++) {
      const n = 1 + rng.nextInt(1 << 24)
      const c = sizeClass(n)
      expect(c).toBeGreaterThanOrEqual(n)
      expect(c).toBeLessThanOrEqual(n <= 4096 ? n : n * 1.0625)
      expect(sizeClass(c)).toBe(c)
    }
    // Nearby lengths share a class; that is what lets them share buffers.
    expect(sizeClass(300 * 128)).toBe(sizeClass(301 * 128))
  })

  it("the pool serves another length of the same class from a released buffer while rows vary, and exact lengths otherwise", () => {
    const pool = new BufferPool(1 << 24)
    pool.setVarying(true)
    const a = pool.take(300 * 128)
    expect(a.length).toBe(300 * 128)
    pool.retain(a)
    pool.release(a)
    const b = pool.take(301 * 128)
    expect(b.length).toBe(301 * 128)
    expect(b.buffer).toBe(a.buffer)
    pool.retain(b)
    pool.release(b)
    pool.setVarying(false)
    const c = pool.take(299 * 128)
    expect(c.length).toBe(299 * 128)
    expect(c.buffer).not.toBe(a.buffer)
    // The class-sized buffer stays in its list, for a length that is exactly its class.
    expect(pool.take(sizeClass(301 * 128)).buffer).toBe(a.buffer)
  })
})

describeNative("varying rows on the native backend", () => {
  const rng = Rng.fromSeed(11)
  const input = (shape: number[]): (() => tf.Tensor) => {
    const v = normal(rng, shape.reduce((a, b) => a * b, 1))
    return () => tf.tensor(v, shape)
  }

  it("matmuls at row counts the process has not seen, plain, transposed, batched, with bias and activation, equal the stock cpu backend's", async () => {
    const w = input([48, 40])
    const wt = input([40, 48])
    const bias = input([40])
    for (const m of [1, 7, 300, 301, 302, 1025]) {
      const x = input([m, 48])
      const xt = input([48, m])
      const xb = input([3, m, 48])
      const under = (f: () => tf.Tensor) => () => withVaryingRows(f)
      await compareBackends(under(() => tf.matMul(x(), w())), 1e-5, 1e-5, `m ${m}`)
      await compareBackends(under(() => tf.matMul(xt(), w(), true, false)), 1e-5, 1e-5, `m ${m} Aᵀ`)
      await compareBackends(under(() => tf.matMul(x(), wt(), false, true)), 1e-5, 1e-5, `m ${m} Bᵀ`)
      await compareBackends(under(() => tf.matMul(xb(), w())), 1e-5, 1e-5, `m ${m} batched`)
      await compareBackends(under(() => tf.fused.matMul({ a: x(), b: w(), bias: bias(), activation: "relu" })), 1e-5, 1e-5, `m ${m} bias relu`)
    }
  })

  it("leaves no tensors behind and the same row counts computing the same numbers as outside it", async () => {
    await tf.setBackend("native")
    const w = tf.tensor2d(normal(rng, 64 * 32), [64, 32])
    const before = tf.memory().numTensors
    for (const m of [100, 101, 2000, 2001]) {
      const x = tf.tensor2d(normal(rng, m * 64), [m, 64])
      const exact = tf.matMul(x, w)
      const varying = withVaryingRows(() => tf.matMul(x, w))
      const [e, v] = [exact.dataSync(), varying.dataSync()]
      for (let i = 0; i < e.length; i++) expect(Math.abs(v[i]! - e[i]!)).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(e[i]!)))
      tf.dispose([x, exact, varying])
    }
    expect(tf.memory().numTensors).toBe(before)
    w.dispose()
  })
})
