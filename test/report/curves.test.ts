import { describe, expect, it } from "vitest"
import { band, ema, type MetricsLimits, metricsReader, seedSeries, thin } from "../../src/report/curves.js"

const row = (step: number, loss: number, extra: object = {}) => ({ step, tokens: 64 * step, loss, lr: 1e-3, gradNorm: 1, smoothed: new Map(), ...extra })
const json = (step: number, loss: number, extra: object = {}) => JSON.stringify({ step, tokens: 64 * step, loss, lr: 1e-3, gradNorm: 1 + step / 100, ...extra })

const roomy: MetricsLimits = { smoothings: [0, 0.6], maxRows: 1000, maxLineBytes: 1000 }

/** metrics.jsonl bytes fed to the reader `chunk` bytes at a time. */
const read = (text: string, limits = roomy, chunk = text.length) => {
  const reader = metricsReader(limits)
  const bytes = new TextEncoder().encode(text)
  for (let i = 0; i < bytes.length; i += Math.max(1, chunk)) reader.push(bytes.subarray(i, i + chunk))
  return reader.done()
}

describe("training curves", () => {
  it("skips a torn last line (a run writing it) and any other line that is not a whole row", () => {
    const text = [row(1, 3), row(2, 2.5, { valBpb: 1.2 }), "not json", JSON.stringify({ step: 3 })].map((r) => (typeof r === "string" ? r : JSON.stringify(r))).join("\n") + '\n{"step":4,"tok'
    const parsed = read(text)
    expect(parsed.rows.map((r) => r.step)).toEqual([1, 2])
    expect(parsed.rows[1]!.valBpb).toBe(1.2)
    expect(parsed.skipped).toBe(3)
    expect(read("").rows).toEqual([])
    // A figure logged as NaN is null in JSON: that row has no such figure. Any other type makes it no row.
    const odd = read([json(1, 3, { gradNorm: null }), json(2, 3, { lr: "0.1" }), json(3, 3, { valBpb: [] })].join("\n"))
    expect(odd.rows.map((r) => [r.step, r.gradNorm])).toEqual([[1, undefined]])
    expect(odd.skipped).toBe(2)
  })

  it("smooths as TensorBoard does: a debiased moving average", () => {
    const xs = [4, 2, 3, 1]
    const w = 0.6
    // Written out: s_n = (Σ_k w^(n-k) (1-w) x_k) / (1 - w^n).
    const expected = xs.map((_, n) => xs.slice(0, n + 1).reduce((a, x, k) => a + w ** (n - k) * (1 - w) * x, 0) / (1 - w ** (n + 1)))
    xs.map(ema(w)).forEach((s, i) => expect(s).toBeCloseTo(expected[i]!, 12))
    expect(xs.map(ema(0))).toEqual(xs)
    expect([5, 5, 5].map(ema(0.9)).every((s) => Math.abs(s - 5) < 1e-12)).toBe(true)
    // The reader smooths the loss and the finite gradient norms as it reads.
    const rows = read([json(1, 4), json(2, 2, { gradNorm: null }), json(3, 3), json(4, 1)].join("\n")).rows
    expect(rows.map((r) => r.smoothed.get(0.6)!.loss)).toEqual(xs.map(ema(0.6)))
    expect(rows.map((r) => r.smoothed.get(0.6)!.gradNorm)).toEqual([...[1.01, 1.03, 1.04].map(ema(0.6))].flatMap((g, i) => (i === 1 ? [undefined, g] : [g])))
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

  it("reads a file chunk by chunk, whatever the chunks, as it reads it whole", () => {
    const text = Array.from({ length: 40 }, (_, i) => json(i + 1, 3 - i / 20, i % 5 === 4 ? { valBpb: 1 + 1 / (i + 1), valLoss: 2 } : {})).join("\n") + "\nnot json\n" + json(41, 1).slice(0, 15)
    const whole = read(text)
    expect(whole.rows.length).toBe(40)
    expect(whole.skipped).toBe(2)
    for (const chunk of [1, 2, 3, 7, 64]) expect(read(text, roomy, chunk)).toEqual(whole)
  })

  it("keeps at most maxRows rows of each kind, evenly by step, the last one always, smoothed over every row", () => {
    const text = Array.from({ length: 1000 }, (_, i) => json(i + 1, 3 + Math.sin(i), (i + 1) % 10 === 0 ? { valBpb: 1 + 1 / (i + 1) } : {})).join("\n") + "\n"
    const limits = { ...roomy, maxRows: 16 }
    const { rows } = read(text, limits, 100)
    const all = read(text).rows
    const training = rows.filter((r) => r.valBpb === undefined && r.step !== 1000)
    // 1000 steps into at most 16: every 64th step (1000 / 64 = 15 rows).
    expect(training.map((r) => r.step)).toEqual(Array.from({ length: 15 }, (_, i) => 64 * (i + 1)).filter((s) => s % 10 !== 0))
    const evals = rows.filter((r) => r.valBpb !== undefined && r.step !== 1000)
    // 100 evaluations into at most 16: every 8th (13), and those that are kept training steps too.
    expect(evals.filter((r) => r.step % 64 !== 0).map((r) => r.step)).toEqual(Array.from({ length: 13 }, (_, i) => 10 * (8 * i + 1)))
    expect(rows.at(-1)!.step).toBe(1000)
    for (const r of rows) expect(r.smoothed.get(0.6)).toEqual(all[r.step - 1]!.smoothed.get(0.6))
  })

  it("skips a line longer than maxLineBytes without holding it", () => {
    const long = JSON.stringify({ step: 2, tokens: 128, loss: 1, note: "x".repeat(5000) })
    for (const chunk of [10, 999, 10_000]) {
      const parsed = read([json(1, 3), long, json(3, 2), long].join("\n"), roomy, chunk)
      expect(parsed.rows.map((r) => r.step)).toEqual([1, 3])
      expect(parsed.skipped).toBe(2)
    }
  })
})
