import type { Wanda } from "../../experiment/prune/methods/wanda.js"
import { prunableParams } from "../prunable.js"
import { keepAllBut } from "../select.js"
import { inputNorms } from "../importance.js"
import { applyMasks, type PruneCompute } from "./compute.js"

/**
 * Wanda's scores of one matrix W [in, out] (y = x·W): S[j, i] = |W[j, i]|·‖X_j‖₂, and its
 * mask: in each output i, the round(sparsity·in) lowest-scoring inputs are removed.
 */
export const wandaScores = (w: { readonly shape: readonly number[]; readonly data: Float32Array }, norms: ArrayLike<number>): Float64Array => {
  const cols = w.shape[1]!
  return Float64Array.from(w.data, (x, k) => Math.abs(x) * norms[Math.floor(k / cols)]!)
}

export const wandaMask = (scores: Float64Array, shape: readonly number[], sparsity: number): Float32Array => {
  const [rows, cols] = shape as [number, number]
  const mask = new Float32Array(rows * cols)
  const column = new Float64Array(rows)
  const k = Math.round(sparsity * rows)
  for (let i = 0; i < cols; i++) {
    for (let j = 0; j < rows; j++) column[j] = scores[j * cols + i]!
    const keep = keepAllBut(column, k)
    for (let j = 0; j < rows; j++) mask[j * cols + i] = keep[j]!
  }
  return mask
}

export const wanda: PruneCompute<Wanda> = (m, input) => {
  const names = prunableParams(input.model.table).map((p) => p.name)
  const norms = inputNorms(input.model, input.params, input.calibration(m.calibration.batches), names)
  const masks = Object.fromEntries(
    names.map((n) => {
      const w = input.weights[n]!
      return [n, { shape: w.shape, data: wandaMask(wandaScores(w, norms.get(n)!), w.shape, m.sparsity) }]
    }),
  )
  return { model: input.model.spec, params: applyMasks(input.weights, masks), masks: { initial: masks }, details: {} }
}
