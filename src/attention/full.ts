import * as tf from "@tensorflow/tfjs"
import { headDimOf } from "../../dsl/kinds/attention/fields.js"
import type { FullAttention } from "../../dsl/kinds/attention/full.js"
import { fusedCausalSoftmax } from "../backend/fused.js"
import type { AttendedRows, AttentionCompute, LayerCtx, ParamView } from "../model/kind.js"
import { fusedCausal, fusedCausalApplies } from "./fused.js"
import { HIDDEN } from "./blocked.js"
import { extendCache, linear, mergeHeads, normHeads, project, projectQkv, splitHeads } from "./projection.js"

/** Dense causal multi-head attention (Vaswani et al. 2017), as in GPT-2. */

/** Causal additive mask for tq queries ending at the last of tk keys: 0 where visible, -1e9 where not. */
export const causalMask = (tq: number, tk: number): tf.Tensor2D =>
  tf.tidy(() => {
    const visible = tf.linalg.bandPart(tf.ones([tq, tk]), -1, tk - tq)
    return tf.mul(tf.sub(1, visible), -1e9) as tf.Tensor2D
  })

const apply = (p: ParamView, x: tf.Tensor3D, spec: FullAttention, ctx: LayerCtx): tf.Tensor3D => {
  const t = x.shape[1]
  const fused = fusedCausalApplies(ctx, spec.dropout)
  const [q, k, v0] = projectQkv(p, x, spec, ctx, undefined, !fused)
  if (fused) return project(p, fusedCausal(q, k, v0, ctx), spec.bias)
  const [kAll, v] = extendCache(ctx, k, v0)
  const tk = kAll.shape[2]
  const qk = tf.matMul(q, kAll, false, true)
  const bias = ctx.position.scoreBias?.(spec.heads, t, tk, ctx.offset, ctx.offset + t - tk)
  const biased = (scores: tf.Tensor): tf.Tensor => (bias ? tf.add(scores, bias) : scores)
  // A single query comes after every key it is given, so it needs no mask.
  const masked = t === 1 ? undefined : fusedCausalSoftmax(biased(qk))
  const weights = ctx.dropout(masked ?? tf.softmax(biased(t === 1 ? qk : tf.add(qk, causalMask(t, tk)))), spec.dropout) as tf.Tensor4D
  return project(p, tf.matMul(weights, v) as tf.Tensor4D, spec.bias)
}

const gatherRows = (x: tf.Tensor2D, rows: Int32Array): tf.Tensor2D => tf.gather(x, tf.tensor1d(rows, "int32"))

/**
 * Queries from the rows `rows` of x only, keys and values from all of it (early exit: the
 * positions that left supply keys and values). The queries are laid out per sequence,
 * [S, H, m, dh] for the most queries m of any sequence (padding rows see every key and are
 * dropped), so the scores cost m·L per sequence. Where the fused causal kernel applies and
 * costs less (about L²/2 per sequence, so when 2m > L), it runs over every row instead, the
 * rows that left with zero queries, and their outputs are dropped (`all`).
 */
const attendRows = (p: ParamView, x: tf.Tensor3D, rows: ReadonlyArray<number>, spec: FullAttention, ctx: LayerCtx): AttendedRows => {
  const [s, l, d] = x.shape
  const heads = spec.heads
  const x2 = x.reshape([s * l, d]) as tf.Tensor2D
  const picked = Int32Array.from(rows)
  const ks = linear(p, x2, "wk", "bk", spec.bias)
  let k = splitHeads(spec.qkNorm ? normHeads(ks, heads) : ks, s, l, heads)
  const v = splitHeads(linear(p, x2, "wv", "bv", spec.bias), s, l, heads)
  const qs = linear(p, gatherRows(x2, picked), "wq", "bq", spec.bias)
  let q2 = tf.mul(spec.qkNorm ? normHeads(qs, heads) : qs, 1 / Math.sqrt(headDimOf(spec, d))) as tf.Tensor2D
  // Each sequence's queries in slots 0…, their positions, and where each query's output lands.
  const count = new Array<number>(s).fill(0)
  for (const r of rows) count[Math.floor(r / l)]!++
  const m = Math.max(...count)
  const position = new Int32Array(s * m).fill(l - 1)
  const slot = new Int32Array(rows.length)
  const source = new Int32Array(s * m)
  const seen = new Array<number>(s).fill(0)
  rows.forEach((r, a) => {
    const seq = Math.floor(r / l)
    slot[a] = seq * m + seen[seq]!++
    position[slot[a]!] = r % l
    source[slot[a]!] = a
  })
  /** The queries among all S·L rows, zero in the others: [S, H, L, dh]. */
  const placed = (): tf.Tensor4D => {
    const index = new Int32Array(s * l).fill(rows.length)
    rows.forEach((r, a) => (index[r] = a))
    return splitHeads(gatherRows(tf.concat([q2, tf.zeros([1, q2.shape[1]])]) as tf.Tensor2D, index), s, l, heads)
  }
  const output = (y: tf.Tensor4D, at: Int32Array): tf.Tensor2D => linear(p, gatherRows(mergeHeads(y), at), "wo", "bo", spec.bias)
  if (2 * m > l && fusedCausalApplies(ctx, spec.dropout)) return { y: output(fusedCausal(placed(), k, v, ctx), picked), all: true }
  const queryKey = ctx.position.queryKey
  if (queryKey) {
    // A rotation acts on each query by its position alone: rotate them in place among all S·L rows.
    const [rotated, rk] = queryKey(placed(), k, ctx.offset, ctx.offset)
    k = rk
    q2 = mergeHeads(rotated)
    source.forEach((a, e) => (source[e] = rows[a]!))
  }
  const q = splitHeads(gatherRows(q2, source), s, m, heads)
  const mask = new Float32Array(s * m * l)
  for (let e = 0; e < s * m; e++) mask.fill(HIDDEN, e * l + position[e]! + 1, (e + 1) * l)
  let scores = tf.add(tf.matMul(q, k, false, true), tf.tensor4d(mask, [s, 1, m, l]))
  if (ctx.position.scoreBias) {
    // The bias of every query position against every key, rows picked per query: [S, H, m, L].
    const bias = tf.gather(ctx.position.scoreBias(heads, l, l, ctx.offset, ctx.offset), tf.tensor1d(position, "int32"), 1)
    scores = tf.add(scores, bias.reshape([heads, s, m, l]).transpose([1, 0, 2, 3]))
  }
  const weights = ctx.dropout(tf.softmax(scores), spec.dropout) as tf.Tensor4D
  return { y: output(tf.matMul(weights, v) as tf.Tensor4D, slot), all: false }
}

export const full: AttentionCompute<FullAttention> = { apply, attendRows }
