import { describe, expect, it } from "vitest"
import { Rng } from "../../src/random/rng.js"
import { type SamplingOptions, sampleToken } from "../../src/eval/sampling.js"

const logits = new Float32Array([1.0, 3.0, 0.5, 2.0, -1.0, 2.5])

/** Expected distribution computed independently: softmax(l/T) in float64, filtered, renormalised. */
const expected = (keep: number[], temperature: number): Map<number, number> => {
  const w = keep.map((i) => Math.exp(logits[i] / temperature))
  const z = w.reduce((a, b) => a + b, 0)
  return new Map(keep.map((i, j) => [i, w[j] / z]))
}

const frequencies = (options: SamplingOptions, draws: number, seed: number): Map<number, number> => {
  const rng = Rng.fromSeed(seed)
  const counts = new Map<number, number>()
  for (let k = 0; k < draws; k++) {
    const t = sampleToken(logits, options, rng)
    counts.set(t, (counts.get(t) ?? 0) + 1)
  }
  return new Map([...counts].map(([t, c]) => [t, c / draws]))
}

const expectClose = (got: Map<number, number>, want: Map<number, number>, tol: number) => {
  expect([...got.keys()].sort()).toEqual([...want.keys()].sort())
  for (const [t, p] of want) expect(Math.abs((got.get(t) ?? 0) - p)).toBeLessThanOrEqual(tol)
}

describe("sampleToken", () => {
  it("temperature 0 and top-k 1 are greedy argmax, consuming no randomness", () => {
    const rng = Rng.fromSeed(1)
    const before = rng.state()
    expect(sampleToken(logits, { temperature: 0 }, rng)).toBe(1)
    expect(sampleToken(logits, { temperature: 1.3, topK: 1 }, rng)).toBe(1)
    expect(rng.state()).toEqual(before)
  })

  it("is stable for huge logits", () => {
    const big = new Float32Array([1e30, 1e30 + 1e24, -1e30])
    const rng = Rng.fromSeed(2)
    for (let k = 0; k < 50; k++) expect([0, 1]).toContain(sampleToken(big, { temperature: 1 }, rng))
    expect(sampleToken(new Float32Array([-Infinity, 0, -Infinity]), { temperature: 1 }, rng)).toBe(1)
  })

  it("matches the softmax at temperature 1 and 0.5", () => {
    const all = [0, 1, 2, 3, 4, 5]
    expectClose(frequencies({ temperature: 1 }, 40_000, 3), expected(all, 1), 0.01)
    expectClose(frequencies({ temperature: 0.5 }, 40_000, 4), expected(all, 0.5), 0.01)
  })

  it("top-k keeps the k most likely tokens, renormalised", () => {
    expectClose(frequencies({ temperature: 1, topK: 3 }, 40_000, 5), expected([1, 5, 3], 1), 0.01)
  })

  it("top-p keeps the smallest prefix whose probability reaches p", () => {
    // softmax(l): p1 ≈ 0.4409, p5 ≈ 0.2674, p3 ≈ 0.1622: 0.4409 + 0.2674 = 0.708 < 0.8, + 0.1622 ≥ 0.8.
    const full = expected([0, 1, 2, 3, 4, 5], 1)
    expect(full.get(1)! + full.get(5)!).toBeLessThan(0.8)
    expect(full.get(1)! + full.get(5)! + full.get(3)!).toBeGreaterThanOrEqual(0.8)
    expectClose(frequencies({ temperature: 1, topP: 0.8 }, 40_000, 6), expected([1, 5, 3], 1), 0.01)
    // After top-k 2 the kept mass is renormalised, so p = 0.5 of it is reached by token 1 alone (0.622).
    expectClose(frequencies({ temperature: 1, topK: 2, topP: 0.5 }, 2_000, 7), new Map([[1, 1]]), 0)
  })

  it("the same seed gives the same tokens", () => {
    const a = Rng.fromSeed(9)
    const b = Rng.fromSeed(9)
    const opts = { temperature: 0.8, topK: 4, topP: 0.9 }
    for (let k = 0; k < 100; k++) expect(sampleToken(logits, opts, a)).toBe(sampleToken(logits, opts, b))
  })

  it("rejects invalid options and logits with a clear error", () => {
    const rng = Rng.fromSeed(1)
    expect(() => sampleToken(logits, { temperature: -1 }, rng)).toThrow("sampling: temperature must be finite and >= 0, got -1")
    expect(() => sampleToken(logits, { temperature: 1, topK: 0 }, rng)).toThrow(/topK must be an integer >= 1, got 0/)
    expect(() => sampleToken(logits, { temperature: 1, topK: 2.5 }, rng)).toThrow(/topK/)
    expect(() => sampleToken(logits, { temperature: 1, topP: 0 }, rng)).toThrow(/topP must be in \(0, 1\], got 0/)
    expect(() => sampleToken(logits, { temperature: 1, topP: 1.5 }, rng)).toThrow(/topP/)
    expect(() => sampleToken(new Float32Array(), { temperature: 1 }, rng)).toThrow(/logits are empty/)
    expect(() => sampleToken(new Float32Array([0, NaN]), { temperature: 1 }, rng)).toThrow(/logit 1 is NaN/)
  })
})
