import { describe, expect, it } from "vitest"
import { type Batch, Batcher, evalBatches } from "../../src/data/batcher.js"

const range = (n: number, from = 0): Uint16Array => Uint16Array.from({ length: n }, (_, i) => from + i)
const take = (b: Batcher, n: number): Batch[] => Array.from({ length: n }, () => b.next())
const rows = (b: Batch): number[][] =>
  Array.from({ length: b.batch }, (_, r) => Array.from(b.tokens.subarray(r * (b.context + 1), (r + 1) * (b.context + 1))))
const masks = (b: Batch): number[][] => Array.from({ length: b.batch }, (_, r) => Array.from(b.mask.subarray(r * b.context, (r + 1) * b.context)))

describe("Batcher", () => {
  it("same seed → same batches; another seed → another order", () => {
    const tokens = range(1000)
    const a = take(Batcher.create(tokens, { batch: 4, context: 16, seed: 7 }), 30)
    const b = take(Batcher.create(tokens, { batch: 4, context: 16, seed: 7 }), 30)
    const c = take(Batcher.create(tokens, { batch: 4, context: 16, seed: 8 }), 30)
    expect(b).toEqual(a)
    expect(c).not.toEqual(a)
  })

  it("a cursor saved at batch k restores (through JSON) to identical batches k+1…, across epochs", () => {
    const tokens = range(1000)
    const original = Batcher.create(tokens, { batch: 5, context: 16, seed: 3 })
    take(original, 11)
    const saved = JSON.stringify(original.cursor)
    const expected = take(original, 40)
    const restored = Batcher.restore(tokens, JSON.parse(saved))
    expect(take(restored, 40)).toEqual(expected)
    expect(restored.cursor.epoch).toBeGreaterThanOrEqual(2)
  })

  it("windows step by context (every token is a target once per epoch); the short last window is padded with mask 0", () => {
    // 11 tokens, context 4: windows [0..4], [4..8], [8..10] + 2 padding positions.
    const b = Batcher.create(range(11, 100), { batch: 3, context: 4, seed: 1, padId: 9 })
    expect(b.windowsPerEpoch).toBe(3)
    const batch = b.next()
    const byStart = new Map(rows(batch).map((r, i) => [r[0], { row: r, mask: masks(batch)[i] }]))
    expect(byStart.get(100)).toEqual({ row: [100, 101, 102, 103, 104], mask: [1, 1, 1, 1] })
    expect(byStart.get(104)).toEqual({ row: [104, 105, 106, 107, 108], mask: [1, 1, 1, 1] })
    expect(byStart.get(108)).toEqual({ row: [108, 109, 110, 9, 9], mask: [1, 1, 0, 0] })
    expect(batch.mask.reduce((s, x) => s + x, 0)).toBe(10)
    expect(b.cursor).toMatchObject({ epoch: 1, index: 0 })
  })

  it("a stream shorter than one window still gives full batches, padding masked", () => {
    const batch = Batcher.create(range(3, 50), { batch: 2, context: 8, seed: 0 }).next()
    expect(rows(batch)).toEqual([
      [50, 51, 52, 0, 0, 0, 0, 0, 0],
      [50, 51, 52, 0, 0, 0, 0, 0, 0],
    ])
    expect(masks(batch)).toEqual([
      [1, 1, 0, 0, 0, 0, 0, 0],
      [1, 1, 0, 0, 0, 0, 0, 0],
    ])
  })

  it("shuffles differently each epoch and covers every window each epoch", () => {
    const b = Batcher.create(range(401), { batch: 10, context: 4, seed: 5 })
    const epochStarts = (): number[] => take(b, 10).flatMap((x) => rows(x).map((r) => r[0]!))
    const e0 = epochStarts()
    const e1 = epochStarts()
    expect([...e0].sort((x, y) => x - y)).toEqual(Array.from({ length: 100 }, (_, i) => 4 * i))
    expect([...e1].sort((x, y) => x - y)).toEqual([...e0].sort((x, y) => x - y))
    expect(e1).not.toEqual(e0)
  })

  it("train and validation never mix: batches come only from their own stream", () => {
    const train = range(5000, 0)
    const valid = range(800, 10_000)
    const fromTrain = take(Batcher.create(train, { batch: 8, context: 32, seed: 1 }), 50)
    const fromValid = [...evalBatches(valid, { batch: 8, context: 32 })]
    for (const b of fromTrain) for (const t of b.tokens) expect(t).toBeLessThan(5000)
    for (const b of fromValid) {
      b.tokens.forEach((t, i) => {
        const row = Math.floor(i / 33)
        const pos = i % 33
        const real = b.mask[row * 32 + Math.max(pos - 1, 0)] === 1
        if (real) expect(t).toBeGreaterThanOrEqual(10_000)
      })
    }
  })

  it("rejects bad shapes and a cursor from another stream", () => {
    expect(() => Batcher.create(range(1), { batch: 1, context: 4, seed: 0 })).toThrow(/at least 2/)
    expect(() => Batcher.create(range(10), { batch: 0, context: 4, seed: 0 })).toThrow(/batch must be/)
    const cursor = Batcher.create(range(100), { batch: 2, context: 4, seed: 0 }).cursor
    expect(() => Batcher.restore(range(101), cursor)).toThrow(/stream of 100 tokens, not 101/)
  })
})

describe("evalBatches", () => {
  it("is in order, non-overlapping, deterministic and stops at maxTokens targets", () => {
    const valid = range(1000, 1)
    const opts = { batch: 3, context: 10, maxTokens: 95 }
    const batches = [...evalBatches(valid, opts)]
    expect([...evalBatches(valid, opts)]).toEqual(batches)
    // 95 targets = 9 full windows + 5: 10 windows, in 4 batches of 3 rows (2 rows of padding).
    expect(batches).toHaveLength(4)
    const targets: number[] = []
    for (const b of batches) {
      rows(b).forEach((r, i) => masks(b)[i]!.forEach((m, t) => m === 1 && targets.push(r[t + 1]!)))
    }
    expect(targets).toEqual(Array.from(valid.subarray(1, 96)))
    expect(masks(batches[3]!)).toEqual([[1, 1, 1, 1, 1, 0, 0, 0, 0, 0], Array(10).fill(0), Array(10).fill(0)])
  })
})
