import * as tf from "@tensorflow/tfjs"
import { beforeAll, describe, expect, it } from "vitest"
import { attention, block, decoder, ffn, norm, stack } from "../../dsl/index.js"
import type { HostBatch } from "../../src/eval/evaluate.js"
import { compile, initValues } from "../../src/model/index.js"
import { runMethod } from "../../src/prune/compute/index.js"
import { wandaMask, wandaScores } from "../../src/prune/compute/wanda.js"
import { activationNorms, inputNorms, outputGradients } from "../../src/prune/importance.js"
import { magnitude, wanda } from "../../src/index.js"
import { prunableParams } from "../../src/prune/prunable.js"
import { referenceLogits, referenceLoss, type RefConfig, type Weights } from "../reference/decoder.js"

/**
 * The scores pruning ranks by, against references computed another way: head importance and
 * neuron Taylor scores against central finite differences of the naive float64 decoder with
 * the head's (neuron's) rows of the output projection scaled by 1 ± h; Wanda's input norms
 * and activation norms against the inputs the naive decoder records; the masks against a
 * sort of those scores; magnitude pruning's sparsity per tensor.
 */
beforeAll(async () => {
  await tf.setBackend("cpu")
})

const tiny: RefConfig = {
  vocab: 11,
  width: 8,
  tied: true,
  blocks: [
    { heads: 3, headDim: 4, hidden: 12, activation: "relu" },
    { heads: 2, headDim: 4, hidden: 20, activation: "gelu" },
  ],
}
const spec = decoder({
  vocab: 11,
  width: 8,
  context: 6,
  layers: stack([
    block({ attention: attention("full", { heads: 3, headDim: 4 }), ffn: ffn("relu", { hidden: 12 }), norm: norm("layer") }),
    block({ attention: attention("full", { heads: 2, headDim: 4 }), ffn: ffn("gelu", { hidden: 20 }), norm: norm("layer") }),
  ]),
})
const model = compile(spec)
const values = initValues(model.table, 7)
// Weights larger than the 0.02 init and non-zero biases, so gradients are O(0.1) and every parameter matters.
for (const [k, v] of values) for (let i = 0; i < v.length; i++) v[i] = v[i]! * 10 + (/gain|bias|\.b/.test(k) ? 0.1 * Math.sin(i + k.length) : 0)
const weights = Object.fromEntries(model.table.map((p) => [p.name, { shape: p.decl.shape, data: values.get(p.name)! }]))
const reference: Weights = new Map([...values].map(([k, v]) => [k, Float64Array.from(v)]))

const sequences = [
  [3, 1, 4, 1, 5, 9, 2],
  [6, 5, 3, 5, 8, 9, 7],
  [9, 3, 2, 3, 8, 4, 6],
  [2, 7, 1, 8, 2, 8, 1],
]
/** Two batches of two sequences. */
const batches: HostBatch[] = [0, 2].map((i) => ({ batch: 2, context: 6, tokens: Int32Array.from([...sequences[i]!, ...sequences[i + 1]!]), mask: new Float32Array(12).fill(1) }))
const rowsOf = (b: HostBatch) => [0, 1].map((r) => Array.from(b.tokens.slice(r * 7, r * 7 + 7)))
const batchLoss = (b: HostBatch) => rowsOf(b).reduce((s, row) => s + referenceLoss(tiny, reference, row), 0) / 2

/** d loss / d ξ at ξ = 1 for rows [from, to) of `weight` scaled by ξ: a central difference in float64. */
const fd = (b: HostBatch, weight: string, from: number, to: number): number => {
  const w = reference.get(weight)!
  const cols = 8
  const orig = w.slice()
  const scaled = (f: number) => {
    for (let r = from; r < to; r++) for (let c = 0; c < cols; c++) w[r * cols + c] = orig[r * cols + c]! * f
    return batchLoss(b)
  }
  const h = 1e-5
  const d = (scaled(1 + h) - scaled(1 - h)) / (2 * h)
  w.set(orig)
  return d
}

const withParams = <T>(f: (params: Record<string, tf.Tensor>) => T): T => {
  const params = Object.fromEntries(model.table.map((p) => [p.name, tf.tensor(values.get(p.name)!, [...p.decl.shape])]))
  try {
    return f(params)
  } finally {
    tf.dispose(Object.values(params))
  }
}

describe("pruning scores against references", () => {
  it("head importance E|∂L/∂ξ_h| equals the mean over batches of |finite difference| of the loss in the head's scale", () => {
    const before = tf.memory().numTensors
    const got = withParams((params) => outputGradients(model, params, batches, "heads"))
    expect(tf.memory().numTensors).toBe(before)
    const expected = tiny.blocks.map((blk, l) =>
      Array.from({ length: blk.heads }, (_, h) => batches.reduce((s, b) => s + Math.abs(fd(b, `blocks.${l}.0.attention.wo`, h * 4, (h + 1) * 4)), 0) / batches.length),
    )
    expect(got.map((s) => s.length)).toEqual([3, 2])
    got.flat().forEach((g, i) => expect(Math.abs(g - expected.flat()[i]!)).toBeLessThan(2e-4 + 2e-3 * expected.flat()[i]!))
    // Not vacuous: the heads differ in importance.
    expect(Math.max(...expected.flat()) / Math.min(...expected.flat())).toBeGreaterThan(1.5)
  })

  it("a neuron's Taylor score |Σ a·∂L/∂a| equals the finite difference of the loss in its scale", () => {
    const got = withParams((params) => outputGradients(model, params, batches, "neurons"))
    const expected = tiny.blocks.map((blk, l) =>
      Array.from({ length: blk.hidden }, (_, j) => batches.reduce((s, b) => s + Math.abs(fd(b, `blocks.${l}.1.ffn.w_out`, j, j + 1)), 0) / batches.length),
    )
    expect(got.map((s) => s.length)).toEqual([12, 20])
    got.flat().forEach((g, i) => expect(Math.abs(g - expected.flat()[i]!)).toBeLessThan(2e-4 + 2e-3 * expected.flat()[i]!))
  })

  /** Σ over every calibration token of x_j², per input of each weight, from the naive decoder. */
  const naiveNorms = (): Map<string, Float64Array> => {
    const sums = new Map<string, Float64Array>()
    for (const b of batches) {
      for (const row of rowsOf(b)) {
        referenceLogits(tiny, reference, row.slice(0, 6), (weight, input) => {
          const acc = sums.get(weight) ?? new Float64Array(input[0]!.length)
          for (const x of input) x.forEach((v, j) => (acc[j]! += v * v))
          sums.set(weight, acc)
        })
      }
    }
    return new Map([...sums].map(([k, s]) => [k, s.map(Math.sqrt)]))
  }

  it("input norms ‖X_j‖₂ and FFN activation norms equal the naive decoder's", () => {
    const names = prunableParams(model.table).map((p) => p.name)
    const [got, acts] = withParams((params) => [inputNorms(model, params, batches, names), activationNorms(model, params, batches)] as const)
    const expected = naiveNorms()
    expect([...got.keys()].sort()).toEqual([...expected.keys()].sort())
    for (const [name, norms] of got) norms.forEach((v, j) => expect(Math.abs(v - expected.get(name)![j]!)).toBeLessThan(1e-5 * (1 + expected.get(name)![j]!)))
    acts.forEach((a, l) => a.forEach((v, j) => expect(v).toBeCloseTo(got.get(`blocks.${l}.1.ffn.w_out`)![j]!, 10)))
  })

  it("Wanda scores |W_ij|·‖X_j‖ and, per output, removes the lowest: as a naive computation and sort", () => {
    const expectedNorms = naiveNorms()
    const sparsity = 0.5
    const pruned = withParams((params) =>
      runMethod(wanda({ sparsity, calibration: { batches: 2 } }), { model, params, weights, calibration: () => batches, seed: 1, steps: 0 }),
    )
    for (const p of prunableParams(model.table)) {
      const [rows, cols] = p.decl.shape as [number, number]
      const w = values.get(p.name)!
      const norms = expectedNorms.get(p.name)!
      // Naive: scores by loops, then per output column a full sort.
      const naive = new Float64Array(rows * cols)
      for (let j = 0; j < rows; j++) for (let i = 0; i < cols; i++) naive[j * cols + i] = Math.abs(w[j * cols + i]!) * norms[j]!
      const got = wandaScores({ shape: p.decl.shape, data: w }, norms)
      got.forEach((s, k) => expect(s).toBeCloseTo(naive[k]!, 12))
      const k = Math.round(sparsity * rows)
      const mask = pruned.masks!.initial[p.name]!.data
      for (let i = 0; i < cols; i++) {
        const order = Array.from({ length: rows }, (_, j) => j).sort((a, b) => naive[a * cols + i]! - naive[b * cols + i]!)
        // Well posed: the k-th and (k+1)-th scores are apart, so float32 norms cannot swap them.
        expect(naive[order[k]! * cols + i]! - naive[order[k - 1]! * cols + i]!).toBeGreaterThan(1e-6)
        const removed = new Set(order.slice(0, k))
        for (let j = 0; j < rows; j++) {
          expect(mask[j * cols + i]).toBe(removed.has(j) ? 0 : 1)
          expect(pruned.params[p.name]!.data[j * cols + i]).toBe(removed.has(j) ? 0 : w[j * cols + i])
        }
      }
      expect(wandaMask(got, p.decl.shape, sparsity)).toEqual(mask)
    }
  })

  it.each([0.25, 0.5, 0.9])("magnitude pruning per layer removes exactly that share of each matrix, the smallest (%s)", (sparsity) => {
    const pruned = runMethod(magnitude({ scope: "layer", sparsity }), { model, params: {}, weights, calibration: () => [], seed: 1, steps: 0 })
    for (const p of model.table) {
      const before = values.get(p.name)!
      const after = pruned.params[p.name]!.data
      if (!prunableParams([p]).length) {
        expect(after).toEqual(before)
        continue
      }
      const zeros = after.filter((x) => x === 0).length
      expect(zeros).toBe(Math.round(sparsity * before.length))
      const removed = before.filter((_, i) => after[i] === 0).map(Math.abs)
      const kept = before.filter((_, i) => after[i] !== 0).map(Math.abs)
      expect(Math.max(...removed)).toBeLessThanOrEqual(Math.min(...kept))
    }
  })

  it("global magnitude pruning removes that share of all matrices together, under one threshold", () => {
    const sparsity = 0.6
    const pruned = runMethod(magnitude({ scope: "global", sparsity }), { model, params: {}, weights, calibration: () => [], seed: 1, steps: 0 })
    const names = prunableParams(model.table).map((p) => p.name)
    const all = names.flatMap((n) => Array.from(values.get(n)!, (x, i) => ({ x: Math.abs(x), gone: pruned.params[n]!.data[i] === 0 })))
    expect(all.filter((a) => a.gone)).toHaveLength(Math.round(sparsity * all.length))
    expect(Math.max(...all.filter((a) => a.gone).map((a) => a.x))).toBeLessThanOrEqual(Math.min(...all.filter((a) => !a.gone).map((a) => a.x)))
    // Unlike per layer, the matrices end at different sparsities (the FFN output projections' init is smaller).
    const shares = names.map((n) => pruned.params[n]!.data.filter((x) => x === 0).length / values.get(n)!.length)
    expect(Math.max(...shares) - Math.min(...shares)).toBeGreaterThan(0.1)
  })
})
