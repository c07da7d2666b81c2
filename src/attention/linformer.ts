import * as tf from "@tensorflow/tfjs"
import { type AnyLinformer, type Linformer, type LinformerCausal, sharedName } from "../../dsl/kinds/attention/linformer.js"
import type { AttentionCompute, LayerCtx, ParamView } from "../model/kind.js"
import { bandParts, groupedAttention, HIDDEN, padSeq, type Part, roundUp } from "./blocked.js"
import { blockRanges, type FusedPart, fusedPartsApply, jointFused, partsKind, rangesOf } from "./fused-parts.js"
import { extendCache, project, projectQkv } from "./projection.js"

/**
 * Linformer and its causal form. Per block the causal form's compressed keys are an exclusive
 * prefix sum of E_m·K_m over earlier blocks m, so work and memory are T·(k + block).
 */
/** E and F as [H, k, length]: their first `length` columns, zero-padded beyond the context. */
const projections = (p: ParamView, spec: AnyLinformer, length: number): [tf.Tensor3D, tf.Tensor3D] => {
  const [e, f] =
    spec.sharing === "none" || spec.sharing === "headwise" ? [p("e"), p("f")] : spec.sharing === "kv" ? [p("e"), p("e")] : [p(sharedName(spec.k)), p(sharedName(spec.k))]
  const perHead = (m: tf.Tensor): tf.Tensor3D => {
    const n = m.shape[m.rank - 1]!
    const heads = m.rank === 3 ? m : tf.broadcastTo(m.expandDims(0), [spec.heads, spec.k, n])
    const cols = tf.slice(heads, [0, 0, 0], [-1, -1, Math.min(length, n)])
    return (length > n ? tf.pad(cols, [[0, 0], [0, 0], [0, length - n]]) : cols) as tf.Tensor3D
  }
  return [perHead(e), perHead(f)]
}

/** E [H, k, T] applied along the sequence of x [B, H, T, dh]: [B, H, k, dh]. */
const compress = (e: tf.Tensor3D, x: tf.Tensor4D): tf.Tensor4D => {
  const [b, h, t, dh] = x.shape
  const bySeq = x.transpose([1, 2, 0, 3]).reshape([h, t, b * dh])
  return tf.matMul(e, bySeq).reshape([h, e.shape[1], b, dh]).transpose([2, 0, 1, 3]) as tf.Tensor4D
}

/** Why a score-bias position scheme cannot apply (native decoding refuses it with the same words). */
export const scoreBiasRefusal = (kind: string): string => `${kind}: compressed keys have no position, so a score-bias position scheme (alibi, t5) cannot apply`

const refuseBias = (ctx: LayerCtx, kind: string): void => {
  if (ctx.position.scoreBias) throw new Error(scoreBiasRefusal(kind))
}

const applyLinformer = (p: ParamView, x: tf.Tensor3D, spec: Linformer, ctx: LayerCtx): tf.Tensor3D => {
  if (ctx.kv !== undefined) throw new Error("linformer is not causal: every output depends on later tokens, so it cannot decode incrementally with a cache")
  refuseBias(ctx, spec.kind)
  const t = x.shape[1]
  if (t > ctx.dims.context) throw new Error(`linformer: ${t} tokens exceed the projection length ${ctx.dims.context}`)
  const [q, k, v] = projectQkv(p, x, spec, ctx)
  const [e, f] = projections(p, spec, t)
  if (partsKind(spec) && fusedPartsApply(ctx, spec.dropout)) {
    const all = rangesOf(t, () => 0, () => spec.k)
    return project(p, jointFused([{ q, k: compress(e, k), v: compress(f, v), ranges: all }]), spec.bias)
  }
  const weights = ctx.dropout(tf.softmax(tf.matMul(q, compress(e, k), false, true)), spec.dropout) as tf.Tensor4D
  return project(p, tf.matMul(weights, compress(f, v)) as tf.Tensor4D, spec.bias)
}

/** Block r's compressed keys: Σ_{m<r} E_m·X_m for blocks m of `block` positions, [B·H·nBlocks, k, dh]. */
const prefixCompress = (e: tf.Tensor3D, x: tf.Tensor4D, block: number): tf.Tensor3D => {
  const [b, h, tp, dh] = x.shape
  const n = tp / block
  const kk = e.shape[1]
  const eBlocks = e.reshape([h, kk, n, block]).transpose([0, 2, 1, 3]).reshape([h * n, kk, block])
  const xBlocks = x.reshape([b, h, n, block, dh]).transpose([1, 2, 3, 0, 4]).reshape([h * n, block, b * dh])
  // Blocks on the last axis: tfjs 4.22's cumsum gradient is wrong for any other axis.
  const perBlock = tf.matMul(eBlocks, xBlocks).reshape([h, n, kk, b, dh]).transpose([3, 0, 2, 4, 1])
  return tf.cumsum(perBlock, 4, true).transpose([0, 1, 4, 2, 3]).reshape([b * h * n, kk, dh]) as tf.Tensor3D
}

const causalParts = (p: ParamView, spec: LinformerCausal) => (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D): Part[] => {
  const [b, h, tp, dh] = q.shape
  const n = tp / spec.block
  const [e, f] = projections(p, spec, tp)
  const kc = prefixCompress(e, k, spec.block)
  const vc = prefixCompress(f, v, spec.block)
  // The first block has no earlier block to compress.
  const mask = new Float32Array(tp * spec.k)
  mask.fill(HIDDEN, 0, spec.block * spec.k)
  const compressed: Part = {
    scores: tf.matMul(q.reshape([b * h * n, spec.block, dh]), kc, false, true).reshape([b, h, tp, spec.k]) as tf.Tensor4D,
    values: (weights) => tf.matMul(weights.reshape([b * h * n, spec.block, spec.k]), vc).reshape([b, h, tp, dh]) as tf.Tensor4D,
    keys: { mask: tf.tensor3d(mask, [1, tp, spec.k]) },
  }
  return [...bandParts(q, k, v, spec.block, false, (_h, i, j) => j <= i, false), compressed]
}

/**
 * The same as parts for the fused kernel: each query's own block up to it, and, from the second
 * block on, the block's k compressed keys (queries in blocks [B, H·(n − 1), block, dh]).
 */
const fusedCausal = (p: ParamView, spec: LinformerCausal, q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D): tf.Tensor4D => {
  const [b, h, t, dh] = q.shape
  const w = spec.block
  const own: FusedPart = { q, k, v, ranges: blockRanges(t, w) }
  const n = Math.ceil(t / w)
  if (n === 1) return jointFused([own])
  const [e, f] = projections(p, spec, n * w)
  // Blocks 1.. of [B, H, n, w, dh] as [B, H·(n − 1), rows, last].
  const later = (x: tf.Tensor, rows: number, last: number) =>
    tf.slice(x.reshape([b, h, n, rows, last]), [0, 0, 1, 0, 0], [b, h, n - 1, rows, last]).reshape([b, h * (n - 1), rows, last]) as tf.Tensor4D
  const compressed: FusedPart = {
    q: later(padSeq(q, n * w), w, dh),
    k: later(prefixCompress(e, padSeq(k, n * w), w), spec.k, dh),
    v: later(prefixCompress(f, padSeq(v, n * w), w), spec.k, dh),
    ranges: rangesOf(w, () => 0, () => spec.k),
    toSequence: (x, fill) => {
      const last = x.shape[3]
      const blocks = tf.pad(x.reshape([b, h, n - 1, w, last]), [[0, 0], [0, 0], [1, 0], [0, 0], [0, 0]], fill).reshape([b, h, n * w, last]) as tf.Tensor4D
      return n * w === t ? blocks : (tf.slice(blocks, [0, 0, 0, 0], [b, h, t, last]) as tf.Tensor4D)
    },
  }
  return jointFused([own, compressed])
}

/** Cached decoding: each new query against the compressed complete blocks before its own and its block so far. */
const cachedCausal = (p: ParamView, spec: LinformerCausal, q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, ctx: LayerCtx): tf.Tensor4D => {
  const [b, h, t, dh] = q.shape
  const rows = Array.from({ length: t }, (_, i) => {
    const pos = ctx.offset + i
    const start = Math.floor(pos / spec.block) * spec.block
    const qi = tf.slice(q, [0, 0, i, 0], [b, h, 1, dh])
    let keys = tf.slice(k, [0, 0, start, 0], [b, h, pos + 1 - start, dh])
    let values = tf.slice(v, [0, 0, start, 0], [b, h, pos + 1 - start, dh])
    if (start > 0) {
      const [e, f] = projections(p, spec, start)
      keys = tf.concat([compress(e, tf.slice(k, [0, 0, 0, 0], [b, h, start, dh])), keys], 2)
      values = tf.concat([compress(f, tf.slice(v, [0, 0, 0, 0], [b, h, start, dh])), values], 2)
    }
    return tf.matMul(ctx.dropout(tf.softmax(tf.matMul(qi, keys, false, true)), spec.dropout) as tf.Tensor4D, values)
  })
  return tf.concat(rows, 2) as tf.Tensor4D
}

const applyCausal = (p: ParamView, x: tf.Tensor3D, spec: LinformerCausal, ctx: LayerCtx): tf.Tensor3D => {
  refuseBias(ctx, spec.kind)
  const t = x.shape[1]
  const [q, k0, v0] = projectQkv(p, x, spec, ctx)
  const cached = ctx.kv?.k !== undefined
  const [k, v] = extendCache(ctx, k0, v0)
  if (ctx.offset + t > ctx.dims.context) throw new Error(`linformer-causal: ${ctx.offset + t} tokens exceed the projection length ${ctx.dims.context}`)
  if (!cached && partsKind(spec) && fusedPartsApply(ctx, spec.dropout)) return project(p, fusedCausal(p, spec, q, k, v), spec.bias)
  const y = cached ? cachedCausal(p, spec, q, k, v, ctx) : groupedAttention(q, k, v, roundUp(t, spec.block), [{ from: 0, to: spec.heads, parts: causalParts(p, spec) }], ctx, spec.dropout)
  return project(p, y, spec.bias)
}

export const linformer: AttentionCompute<Linformer> = { apply: applyLinformer }
export const linformerCausal: AttentionCompute<LinformerCausal> = { apply: applyCausal }
