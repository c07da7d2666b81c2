import type { Magnitude } from "../../experiment/prune/methods/magnitude.js"
import type { Scope } from "../../experiment/prune/methods/fields.js"
import { prunableParams } from "../prunable.js"
import { keepAllBut } from "../select.js"
import type { TensorArrays } from "../../train/checkpoint.js"
import { applyMasks, type PruneCompute } from "./compute.js"

/** Masks removing the smallest |w| of the named matrices: `sparsity` of each ("layer") or of all together ("global"). */
export const magnitudeMasks = (weights: TensorArrays, names: ReadonlyArray<string>, scope: Scope, sparsity: number): TensorArrays => {
  const abs = (name: string) => weights[name]!.data.map(Math.abs)
  if (scope === "layer") {
    return Object.fromEntries(names.map((n) => [n, { shape: weights[n]!.shape, data: keepAllBut(abs(n), Math.round(sparsity * weights[n]!.data.length)) }]))
  }
  const total = names.reduce((s, n) => s + weights[n]!.data.length, 0)
  const all = new Float32Array(total)
  let offset = 0
  for (const n of names) {
    all.set(abs(n), offset)
    offset += weights[n]!.data.length
  }
  const keep = keepAllBut(all, Math.round(sparsity * total))
  offset = 0
  return Object.fromEntries(
    names.map((n) => {
      const size = weights[n]!.data.length
      const mask = { shape: weights[n]!.shape, data: keep.slice(offset, offset + size) }
      offset += size
      return [n, mask]
    }),
  )
}

export const magnitude: PruneCompute<Magnitude> = (m, input) => {
  const masks = magnitudeMasks(input.weights, prunableParams(input.model.table).map((p) => p.name), m.scope, m.sparsity)
  return { model: input.model.spec, params: applyMasks(input.weights, masks), masks: { initial: masks }, details: {} }
}
