import * as tf from "@tensorflow/tfjs"
import { expect } from "vitest"
import { Rng } from "../../src/random/rng.js"

/** Helpers shared by the backend tests: seeded inputs and stock-vs-native comparison. */

export const normal = (rng: Rng, n: number): Float32Array => {
  const out = new Float32Array(n)
  for (let i = 0; i < n; i++) out[i] = rng.nextNormal()
  return out
}

/** Normal values with NaN, ±Inf, ±0 planted at seeded positions. */
export const withSpecials = (rng: Rng, n: number): Float32Array => {
  const out = normal(rng, n)
  const specials = [NaN, Infinity, -Infinity, 0, -0]
  for (let i = 0; i < Math.min(n, specials.length); i++) out[rng.nextInt(n)] = specials[i]
  return out
}

export interface Result {
  readonly shape: number[]
  readonly dtype: tf.DataType
  readonly values: Float32Array | Int32Array | Uint8Array
}

/** Runs `f` on a backend and reads its result(s) back. */
export const runOn = async (backend: string, f: () => tf.Tensor | tf.Tensor[]): Promise<Result[]> => {
  await tf.setBackend(backend)
  const out = tf.tidy(f)
  const list = Array.isArray(out) ? out : [out]
  const results: Result[] = []
  for (const t of list) {
    results.push({ shape: t.shape, dtype: t.dtype, values: (await t.data()) as Result["values"] })
    t.dispose()
  }
  return results
}

/**
 * Element-wise |got - want| <= atol + rtol·|want|; NaN must meet NaN and infinities must be
 * equal. Returns the worst violation ratio for diagnostics.
 */
export const expectClose = (got: Result[], want: Result[], rtol: number, atol: number, label = ""): void => {
  expect(got.length, label).toBe(want.length)
  for (let j = 0; j < want.length; j++) {
    expect(got[j].shape, label).toEqual(want[j].shape)
    expect(got[j].dtype, label).toBe(want[j].dtype)
    const g = got[j].values
    const w = want[j].values
    expect(g.length, label).toBe(w.length)
    for (let i = 0; i < w.length; i++) {
      const a = g[i]
      const b = w[i]
      if (Number.isNaN(b) || !Number.isFinite(b)) {
        if (!Object.is(a, b)) expect(`${label}[${i}] = ${a}`).toBe(`${label}[${i}] = ${b}`)
      } else if (!(Math.abs(a - b) <= atol + rtol * Math.abs(b))) {
        expect(`${label}[${i}] = ${a}`).toBe(`${label}[${i}] ≈ ${b}`)
      }
    }
  }
}

/** Same computation on stock `cpu` and on `native`, compared. */
export const compareBackends = async (
  f: () => tf.Tensor | tf.Tensor[],
  rtol: number,
  atol: number,
  label = "",
): Promise<void> => {
  const want = await runOn("cpu", f)
  const got = await runOn("native", f)
  expectClose(got, want, rtol, atol, label)
}
