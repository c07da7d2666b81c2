import * as tf from "@tensorflow/tfjs"
import type { AttentionSpec } from "../../dsl/kinds/attention/index.js"
import { maxDilation } from "../../dsl/kinds/attention/sliding.js"
import { attentionFusion, fusedAttention, fusedAttentionWithLse, type KeyRanges } from "../backend/fused.js"
import type { LayerCtx } from "../model/kind.js"
import { padSeq } from "./blocked.js"

/**
 * A restricted kind's whole-sequence pattern as parts of one softmax that the fused kernel
 * computes (src/backend/fused.ts): each of a part's queries sees one contiguous range of the
 * part's keys, so the kernel visits only the blocks holding them, and parts over disjoint keys
 * combine by their log-sum-exps, out = Σ_p exp(lse_p − lse)·out_p. Keys spread over the
 * sequence at a stride or dilation l become ranges once the sequence is reordered into its l
 * residue classes; keys at a few chosen positions (summaries, global tokens) are gathered.
 */
export interface FusedPart {
  readonly q: tf.Tensor4D
  readonly k: tf.Tensor4D
  readonly v: tf.Tensor4D
  /** Which of this part's keys each of its queries sees. */
  readonly ranges: KeyRanges
  /**
   * The part's rows [B, H′, T′, n] back in sequence order [B, H, T, n], rows the part leaves out
   * filled with `fill` (its output 0, its log-sum-exp −∞); absent: they are already.
   */
  readonly toSequence?: (x: tf.Tensor4D, fill: number) => tf.Tensor4D
}

/**
 * Kinds computed as parts (a whole sequence, when fusedPartsApply): the sparse ones, dilated
 * windows, Linformer's (its compressed keys as keys of their own), and Longformer's ordinary rows
 * where its window is undilated (outside a dilated window the global keys a query sees are no
 * prefix of them). Undilated windows and dense attention take the kernel directly
 * (src/attention/fused.ts), ALiBi included.
 */
export const partsKind = (spec: AttentionSpec): boolean =>
  spec.kind === "sparse-strided" ||
  spec.kind === "sparse-fixed" ||
  spec.kind === "linformer" ||
  spec.kind === "linformer-causal" ||
  (spec.kind === "sliding-window" && maxDilation(spec) > 1) ||
  (spec.kind === "longformer" && maxDilation(spec) === 1)

/**
 * Whether the parts path computes what the composed ops would: a whole sequence from position 0
 * (the patterns are in absolute positions) without a cache, no dropout on the weights while
 * training (tfjs draws that mask), and no score bias (gathered keys lose the distances a bias
 * reads). q and k come rotated, as the composed path rotates them.
 */
export const fusedPartsApply = (ctx: LayerCtx, rate: number): boolean =>
  attentionFusion() && ctx.kv === undefined && ctx.offset === 0 && !(ctx.training && rate > 0) && ctx.position.scoreBias === undefined

/** Ranges of n queries: query i sees keys [lo(i), hi(i)). */
export const rangesOf = (n: number, lo: (i: number) => number, hi: (i: number) => number): KeyRanges => {
  const ranges = { lo: new Int32Array(n), hi: new Int32Array(n) }
  for (let i = 0; i < n; i++) {
    ranges.lo[i] = lo(i)
    ranges.hi[i] = hi(i)
  }
  return ranges
}

/** Causal ranges within `span` of the query: keys i − span … i. */
export const bandRanges = (n: number, span: number): KeyRanges => rangesOf(n, (i) => Math.max(0, i - span), (i) => i + 1)

/** Causal ranges within the query's block of w: keys ⌊i/w⌋·w … i. */
export const blockRanges = (n: number, w: number): KeyRanges => rangesOf(n, (i) => Math.floor(i / w) * w, (i) => i + 1)

/**
 * [B, H, T, n] in residue classes mod l: [B, H·l, R, n] with R = ⌈T/l⌉, row a of class r holding
 * position a·l + r (the sequence padded with zeros to R·l, padding last in every class).
 */
export const byResidue = (x: tf.Tensor4D, l: number): tf.Tensor4D => {
  const [b, h, t, n] = x.shape
  const r = Math.ceil(t / l)
  return padSeq(x, r * l).reshape([b, h, r, l, n]).transpose([0, 1, 3, 2, 4]).reshape([b, h * l, r, n]) as tf.Tensor4D
}

/** byResidue's inverse for a sequence of t positions, h heads. */
export const fromResidue = (x: tf.Tensor4D, l: number, h: number, t: number): tf.Tensor4D => {
  const [b, , r, n] = x.shape
  const y = x.reshape([b, h, l, r, n]).transpose([0, 1, 3, 2, 4]).reshape([b, h, r * l, n]) as tf.Tensor4D
  return r * l === t ? y : (tf.slice(y, [0, 0, 0, 0], [b, h, t, n]) as tf.Tensor4D)
}

/**
 * Causal attention within each residue class mod l of q, k, v [B, H, T, dh]: query i sees keys
 * i − a·l for gap ≤ a ≤ last (a strided head's far keys, a dilated window).
 */
export const residuePart = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, l: number, gap: number, last: number): FusedPart => {
  const [, h, t] = q.shape
  return {
    q: byResidue(q, l),
    k: byResidue(k, l),
    v: byResidue(v, l),
    ranges: rangesOf(Math.ceil(t / l), (a) => Math.max(0, a - last), (a) => Math.max(0, a + 1 - gap)),
    toSequence: (x) => fromResidue(x, l, h, t),
  }
}

/** The parts' joint attention [B, H, T, dh]; every query must see a key in some part when there are several. */
export const jointFused = (parts: ReadonlyArray<FusedPart>): tf.Tensor4D => {
  const back = (p: FusedPart, x: tf.Tensor4D, fill: number) => (p.toSequence ? p.toSequence(x, fill) : x)
  const kernel = <T>(result: T | undefined): T => {
    if (result === undefined) throw new Error("fused attention: the backend has no kernel; ask fusedPartsApply first")
    return result
  }
  if (parts.length === 1) {
    const p = parts[0]!
    return back(p, kernel(fusedAttention(p.q, p.k, p.v, { ranges: p.ranges })), 0)
  }
  const each = parts.map((p) => {
    const [out, lse] = kernel(fusedAttentionWithLse(p.q, p.k, p.v, { ranges: p.ranges }))
    return [back(p, out, 0), back(p, tf.expandDims(lse, 3) as tf.Tensor4D, -Infinity)] as const
  })
  // Relative to the largest log-sum-exp, finite where a row sees any key; a part that shows a row nothing weighs exp(−∞) = 0.
  const top = each.map(([, lse]) => lse).reduce((a, b) => tf.maximum(a, b))
  const weights = each.map(([, lse]) => tf.exp(tf.sub(lse, top)))
  const sum = weights.reduce((a, b) => tf.add(a, b))
  return tf.div(each.map(([out], p) => tf.mul(out, weights[p]!)).reduce((a, b) => tf.add(a, b)), sum) as tf.Tensor4D
}

/** Heads [from, to) of x [B, H, T, dh]. */
export const headSlice = (x: tf.Tensor4D, from: number, to: number): tf.Tensor4D =>
  from === 0 && to === x.shape[1] ? x : (tf.slice(x, [0, from, 0, 0], [-1, to - from, -1, -1]) as tf.Tensor4D)
