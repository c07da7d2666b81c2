import { describe, expect, it } from "vitest"
import { band, parseMetrics, seedSeries, smooth, thin } from "../../src/report/curves.js"

const row = (step: number, loss: number, extra: object = {}) => ({ step, tokens: 64 * step, loss, lr: 1e-3, gradNorm: 1, ...extra })

describe("training curves", () => {
  it("skips a torn last line (a run writing it) and any other line that is not a whole row", () => {
    const text = [row(1, 3), row(2, 2.5, { valBpb: 1.2 }), "not json", JSON.stringify({ step: 3 })].map((r) => (typeof r === "string" ? r : JSON.stringify(r))).join("\n") + '\n{"step":4,"tok'
    const parsed = parseMetrics(text)
    expect(parsed.rows.map((r) => r.step)).toEqual([1, 2])
    expect(parsed.rows[1]!.valBpb).toBe(1.2)
    expect(parsed.skipped).toBe(3)
    expect(parseMetrics("").rows).toEqual([])
  })

  it("smooths as TensorBoard does: a debiased moving average", () => {
    const xs = [4, 2, 3, 1]
    const w = 0.6
    // Written out: s_n = (Σ_k w^(n-k) (1-w) x_k) / (1 - w^n).
    const expected = xs.map((_, n) => xs.slice(0, n + 1).reduce((a, x, k) => a + w ** (n - k) * (1 - w) * x, 0) / (1 - w ** (n + 1)))
    smooth(xs, w).forEach((s, i) => expect(s).toBeCloseTo(expected[i]!, 12))
    expect(smooth(xs, 0)).toEqual(xs)
    expect(smooth([5, 5, 5], 0.9).every((s) => Math.abs(s - 5) < 1e-12)).toBe(true)
  })

  it("pools seeds per step into mean, min and max, over the seeds that reached the step", () => {
    const runs = [
      { seed: 1, rows: [row(1, 3), row(2, 2, { valBpb: 1.5 }), row(3, 1)] },
      { seed: 2, rows: [row(1, 5), row(2, 4, { valBpb: 1.1 })] },
    ]
    expect(band(seedSeries(runs, (r) => r.loss))).toEqual([
      { step: 1, tokens: 64, mean: 4, min: 3, max: 5, seeds: 2 },
      { step: 2, tokens: 128, mean: 3, min: 2, max: 4, seeds: 2 },
      { step: 3, tokens: 192, mean: 1, min: 1, max: 1, seeds: 1 },
    ])
    const bpb = band(seedSeries(runs, (r) => r.valBpb))
    expect(bpb.map((p) => [p.step, p.min, p.max])).toEqual([[2, 1.1, 1.5]])
    expect(bpb[0]!.mean).toBeCloseTo(1.3, 12)
  })

  it("thins a long series evenly, keeping both ends, and leaves a short one whole", () => {
    const xs = Array.from({ length: 1000 }, (_, i) => i)
    const t = thin(xs, 101)
    expect(t.length).toBe(101)
    expect(t[0]).toBe(0)
    expect(t.at(-1)).toBe(999)
    expect(new Set(t.slice(1).map((x, i) => x - t[i]!))).toEqual(new Set([10, 9]))
    expect(thin([1, 2, 3], 5)).toEqual([1, 2, 3])
  })
})
