import { validateSpec } from "../../dsl/decode.js"
import { headDimOf } from "../../dsl/kinds/attention/fields.js"
import type { AttentionSpec } from "../../dsl/kinds/attention/index.js"
import type { DecoderSpec } from "../../dsl/nodes.js"
import type { TensorArrays } from "../train/checkpoint.js"
import { attentionUnits, ffnUnits, mapLeaves } from "../experiment/prune/units.js"

/**
 * Structured pruning made real: the model with only the kept heads and FFN neurons, as a
 * smaller spec (each block its own head count at the same, explicit head size; each FFN an
 * exact `hidden`), and its weights sliced from the source's. Its logits equal the source's
 * with the removed heads' and neurons' outputs masked to zero.
 */
export interface Kept {
  /** Kept head indices of each attention node, by parameter prefix (absent: all kept). */
  readonly heads?: ReadonlyMap<string, ReadonlyArray<number>>
  /** Kept hidden units of each FFN node, by parameter prefix. */
  readonly neurons?: ReadonlyMap<string, ReadonlyArray<number>>
}

/** Blocks of `size` along `axis` of a tensor, keeping the blocks `keep` in order. */
const sliceBlocks = (t: { readonly shape: readonly number[]; readonly data: Float32Array }, axis: number, size: number, keep: ReadonlyArray<number>) => {
  const shape = [...t.shape]
  const outer = shape.slice(0, axis).reduce((a, b) => a * b, 1)
  const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1)
  const along = shape[axis]!
  const out = new Float32Array(outer * keep.length * size * inner)
  let o = 0
  for (let a = 0; a < outer; a++) {
    for (const k of keep) {
      const from = (a * along + k * size) * inner
      out.set(t.data.subarray(from, from + size * inner), o)
      o += size * inner
    }
  }
  shape[axis] = keep.length * size
  return { shape, data: out }
}

/** How each of an attention node's parameters is laid out by head: axis and block size, or undefined when per-layer. */
const headAxis = (name: string, shape: readonly number[], dh: number): { axis: number; size: number } | undefined => {
  if (["wq", "wk", "wv", "wqg", "wkg", "wvg"].includes(name)) return { axis: 1, size: dh }
  if (["bq", "bk", "bv", "bqg", "bkg", "bvg", "wo"].includes(name)) return { axis: 0, size: dh }
  if (name === "bo") return undefined
  // Linformer's E and F: [H, k, n] per head with sharing "none", [k, n] for the layer otherwise.
  if (name === "e" || name === "f") return shape.length === 3 ? { axis: 0, size: 1 } : undefined
  throw new Error(`head pruning has no rule for attention parameter "${name}"`)
}

const neuronAxis = (name: string): { axis: number; size: number } | undefined => {
  if (name === "w_in" || name === "w_gate") return { axis: 1, size: 1 }
  if (name === "b_in" || name === "b_gate" || name === "w_out") return { axis: 0, size: 1 }
  if (name === "b_out") return undefined
  throw new Error(`neuron pruning has no rule for FFN parameter "${name}"`)
}

const withHeads = (a: AttentionSpec, keep: ReadonlyArray<number>, width: number): AttentionSpec => {
  const headDim = headDimOf(a, width)
  const sliced = { ...a, heads: keep.length, headDim }
  return "dilation" in a && typeof a.dilation !== "number" ? ({ ...sliced, dilation: keep.map((h) => (a.dilation as ReadonlyArray<number>)[h]!) } as AttentionSpec) : sliced
}

export const materialise = (spec: DecoderSpec, params: TensorArrays, kept: Kept): { model: DecoderSpec; params: TensorArrays } => {
  const out: Record<string, { shape: readonly number[]; data: Float32Array }> = { ...params }
  const sliceUnit = (prefix: string, keep: ReadonlyArray<number>, rule: (name: string, shape: readonly number[]) => { axis: number; size: number } | undefined) => {
    for (const name of Object.keys(params).filter((n) => n.startsWith(`${prefix}.`))) {
      const local = name.slice(prefix.length + 1)
      const r = rule(local, params[name]!.shape)
      if (r !== undefined) out[name] = sliceBlocks(params[name]!, r.axis, r.size, keep)
    }
  }
  for (const u of attentionUnits(spec)) {
    const keep = kept.heads?.get(u.prefix)
    if (keep !== undefined) sliceUnit(u.prefix, keep, (name, shape) => headAxis(name, shape, headDimOf(u.spec, spec.width)))
  }
  for (const u of ffnUnits(spec)) {
    const keep = kept.neurons?.get(u.prefix)
    if (keep !== undefined) sliceUnit(u.prefix, keep, neuronAxis)
  }
  const model = mapLeaves(spec, (layer, prefix) => {
    if (layer.op === "attention") {
      const keep = kept.heads?.get(prefix)
      return keep === undefined ? layer : withHeads(layer, keep, spec.width)
    }
    if (layer.op === "ffn") {
      const keep = kept.neurons?.get(prefix)
      if (keep === undefined) return layer
      const { mult: _mult, ...rest } = layer
      return { ...rest, hidden: keep.length }
    }
    return layer
  })
  return { model: validateSpec(model), params: out }
}

/** The kept indices from removal flags. */
export const keptOf = (removed: ReadonlyArray<boolean>): number[] => removed.flatMap((r, i) => (r ? [] : [i]))
