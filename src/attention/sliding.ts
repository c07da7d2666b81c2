import * as tf from "@tensorflow/tfjs"
import { headDimOf } from "../../dsl/kinds/attention/fields.js"
import { maxDilation, pick, type Sliding, slidingVisible, windowVisible } from "../../dsl/kinds/attention/sliding.js"
import type { AttentionCompute, LayerCtx, ParamView } from "../model/kind.js"
import { fusableKind, fusedCausal, fusedCausalApplies } from "./fused.js"
import { bandRanges, type FusedPart, fusedPartsApply, headSlice, jointFused, partsKind, rangesOf, residuePart } from "./fused-parts.js"
import { bandParts, groupedAttention, HIDDEN, listPart, maskedAttention, type Part, roundUp, selectRows } from "./blocked.js"
import { extendCache, linear, normHeads, project, projectQkv, splitHeads } from "./projection.js"

/**
 * Sliding-window and Longformer attention, computed in blocks of W = w·max(d): each query
 * block attends to its own and the previous block, [B,H,T/W,W,2W]; dilated heads mask the
 * off-grid keys of that span. With a cache, Longformer's slot holds [k | k_g] and [v | v_g]
 * concatenated along the head dimension.
 */
const slidingParts = (spec: Sliding, layer: number, w: number, previous: boolean, globals: ReadonlyArray<number>) => (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D): Part[] => {
  const perHead = typeof spec.dilation !== "number"
  const inWindow = windowVisible(spec, layer)
  const band = bandParts(q, k, v, w, previous, inWindow, perHead)
  // Global keys the window already covers are left to the band, so none is counted twice.
  return globals.length === 0 ? band : [...band, listPart(q, selectRows(k, globals), selectRows(v, globals), globals, (h, i, j) => j <= i && !inWindow(h, i, j), perHead)]
}

/** K_g and V_g [B, H, T, dh] of every position (the global rows attend to all of them). */
const globalKeys = (p: ParamView, x: tf.Tensor3D, spec: Sliding, ctx: LayerCtx): [tf.Tensor4D, tf.Tensor4D] => {
  const [b, t, d] = x.shape
  const x2 = x.reshape([b * t, d]) as tf.Tensor2D
  const kgs = linear(p, x2, "wkg", "bkg", spec.bias)
  let kg = splitHeads(spec.qkNorm ? normHeads(kgs, spec.heads) : kgs, b, t, spec.heads)
  if (ctx.position.queryKey) kg = ctx.position.queryKey(kg, kg, ctx.offset, ctx.offset)[1]
  return [kg, splitHeads(linear(p, x2, "wvg", "bvg", spec.bias), b, t, spec.heads)]
}

/** Q_g [B, H, G, dh] of the rows `rows` of x only, each rotated at its own position. */
const globalQueries = (p: ParamView, x: tf.Tensor3D, rows: ReadonlyArray<number>, spec: Sliding, ctx: LayerCtx): tf.Tensor4D => {
  const [b, t, d] = x.shape
  const xr = selectRows(x.reshape([b, 1, t, d]) as tf.Tensor4D, rows).reshape([b * rows.length, d]) as tf.Tensor2D
  const qgs = linear(p, xr, "wqg", "bqg", spec.bias)
  const q = splitHeads(tf.mul(spec.qkNorm ? normHeads(qgs, spec.heads) : qgs, 1 / Math.sqrt(headDimOf(spec, d))), b, rows.length, spec.heads)
  const queryKey = ctx.position.queryKey
  if (!queryKey) return q
  const [, h, , dh] = q.shape
  const one = (a: number) => tf.slice(q, [0, 0, a, 0], [b, h, 1, dh]) as tf.Tensor4D
  return tf.concat(rows.map((r, a) => queryKey(one(a), one(a), ctx.offset + r, ctx.offset + r)[0]), 2) as tf.Tensor4D
}

/** Global rows (queries at absolute `positions`) against every earlier token's global key and value. */
const globalAttention = (qg: tf.Tensor4D, kg: tf.Tensor4D, vg: tf.Tensor4D, positions: ReadonlyArray<number>, ctx: LayerCtx, rate: number): tf.Tensor4D => {
  const [, h, t] = kg.shape
  const mask = new Float32Array(positions.length * t)
  positions.forEach((g, a) => mask.fill(HIDDEN, a * t + g + 1, (a + 1) * t))
  let scores = tf.add(tf.matMul(qg, kg, false, true), tf.tensor3d(mask, [1, positions.length, t]))
  const scoreBias = ctx.position.scoreBias
  if (scoreBias) scores = tf.add(scores, tf.concat(positions.map((g) => scoreBias(h, 1, t, g, 0)), 1))
  return tf.matMul(ctx.dropout(tf.softmax(scores), rate) as tf.Tensor4D, vg) as tf.Tensor4D
}

/** Replaces the rows at `rows` of out [B,H,T,dh] with replacement [B,H,|rows|,dh]. */
const replaceRows = (out: tf.Tensor4D, replacement: tf.Tensor4D, rows: ReadonlyArray<number>): tf.Tensor4D => {
  const [b, h, t, dh] = out.shape
  const source = new Int32Array(t)
  const keep = new Float32Array(t).fill(1)
  rows.forEach((g, a) => {
    source[g] = a + 1
    keep[g] = 0
  })
  const padded = tf.concat([tf.zeros([b, h, 1, dh]), replacement], 2)
  return tf.add(tf.mul(out, tf.tensor4d(keep, [1, 1, t, 1])), tf.gather(padded, tf.tensor1d(source, "int32"), 2)) as tf.Tensor4D
}

/**
 * The window as parts for the fused kernel (src/attention/fused-parts.ts), per run of heads
 * with one dilation d: the w keys i − d, …, i − w·d by residue classes mod d. Longformer's
 * ordinary rows (undilated) add the global keys the window does not reach, gathered: query i
 * sees those before i − w, a prefix of them.
 */
const fusedWindow = (spec: Sliding, layer: number, q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, globals: ReadonlyArray<number>): tf.Tensor4D => {
  const w = pick(spec.window, layer)
  const t = q.shape[2]
  const runs: Array<{ from: number; to: number; d: number }> = []
  for (let h = 0; h < spec.heads; h++) {
    const d = pick(spec.dilation, h)
    const last = runs.at(-1)
    if (last !== undefined && last.d === d) last.to = h + 1
    else runs.push({ from: h, to: h + 1, d })
  }
  const outs = runs.map(({ from, to, d }) => {
    const [qh, kh, vh] = [q, k, v].map((x) => headSlice(x, from, to)) as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D]
    const parts: FusedPart[] = [d === 1 ? { q: qh, k: kh, v: vh, ranges: bandRanges(t, w) } : residuePart(qh, kh, vh, d, 0, w)]
    if (globals.length > 0) {
      const ranges = rangesOf(t, () => 0, (i) => globals.filter((g) => g < i - w).length)
      parts.push({ q: qh, k: selectRows(kh, globals), v: selectRows(vh, globals), ranges })
    }
    return jointFused(parts)
  })
  return outs.length === 1 ? outs[0]! : (tf.concat(outs, 1) as tf.Tensor4D)
}

const apply = (p: ParamView, x: tf.Tensor3D, spec: Sliding, ctx: LayerCtx): tf.Tensor3D => {
  const t = x.shape[1]
  const dh = headDimOf(spec, x.shape[2])
  const fused = fusableKind(spec) && fusedCausalApplies(ctx, spec.dropout)
  const global = spec.kind === "longformer"
  const fusedParts = partsKind(spec) && fusedPartsApply(ctx, spec.dropout)
  const [q, k0, v0] = projectQkv(p, x, spec, ctx, undefined, !fused)
  const [kg0, vg0] = global ? globalKeys(p, x, spec, ctx) : []
  const cached = ctx.kv?.k !== undefined
  const pack = global && ctx.kv !== undefined
  const [kPacked, vPacked] = extendCache(ctx, pack ? (tf.concat([k0, kg0!], 3) as tf.Tensor4D) : k0, pack ? (tf.concat([v0, vg0!], 3) as tf.Tensor4D) : v0)
  const half = (x: tf.Tensor4D, second: boolean): tf.Tensor4D => tf.slice(x, [0, 0, 0, second ? dh : 0], [-1, -1, -1, dh]) as tf.Tensor4D
  const [k, v] = pack ? [half(kPacked, false), half(vPacked, false)] : [kPacked, vPacked]
  const [kg, vg] = pack ? [half(kPacked, true), half(vPacked, true)] : [kg0, vg0]
  // Global positions among this call's tokens, as row indices.
  const rows = global ? spec.global.filter((g) => g >= ctx.offset && g < ctx.offset + t).map((g) => g - ctx.offset) : []
  const withGlobalRows = (local: tf.Tensor4D, kg: tf.Tensor4D, vg: tf.Tensor4D): tf.Tensor3D => {
    if (rows.length === 0) return project(p, local, spec.bias)
    const qg = globalQueries(p, x, rows, spec, ctx)
    return project(p, replaceRows(local, globalAttention(qg, kg, vg, rows.map((r) => ctx.offset + r), ctx, spec.dropout), rows), spec.bias)
  }
  if (cached) {
    const local = maskedAttention(q, k, v, ctx.offset, slidingVisible(spec, ctx.layer), ctx, spec.dropout)
    return global ? withGlobalRows(local, kg!, vg!) : project(p, local, spec.bias)
  }
  if (fused) return project(p, fusedCausal(q, k, v, ctx, pick(spec.window, ctx.layer)), spec.bias)
  if (fusedParts) {
    const local = fusedWindow(spec, ctx.layer, q, k, v, rows)
    return global ? withGlobalRows(local, kg!, vg!) : project(p, local, spec.bias)
  }
  const span = pick(spec.window, ctx.layer) * maxDilation(spec)
  // A window reaching past the sequence is one block holding all of it.
  const [w, previous] = span < t ? [span, true] : [t, false]
  const parts = slidingParts(spec, ctx.layer, w, previous, rows)
  const local = groupedAttention(q, k, v, roundUp(t, w), [{ from: 0, to: spec.heads, parts }], ctx, spec.dropout)
  return global ? withGlobalRows(local, kg!, vg!) : project(p, local, spec.bias)
}

export const sliding: AttentionCompute<Sliding> = { apply }
