import * as tf from "@tensorflow/tfjs"
import type { Visible } from "../../dsl/kind.js"
import { type Factor, fixedLocal, fixedSummary, groupsOf, type Sparse, sparseVisible, stridedLocal, stridedStride } from "../../dsl/kinds/attention/sparse.js"
import type { AttentionCompute, LayerCtx, ParamView } from "../model/kind.js"
import { bandParts, groupedAttention, type HeadGroup, listPart, maskedAttention, padSeq, type Part, roundUp, stridePart } from "./blocked.js"
import { bandRanges, blockRanges, type FusedPart, fusedPartsApply, headSlice, jointFused, partsKind, rangesOf, residuePart } from "./fused-parts.js"
import { extendCache, project, projectQkv } from "./projection.js"

/** Factorised sparse attention (Child et al. 2019): each factor of the pattern as parts of one joint softmax. */

/** The last c positions of every block of l of x [B, H, n·l, dh] (its length a whole number of blocks), by reshape and slice: [B, H, n·c, dh]. */
const summaryRows = (x: tf.Tensor4D, l: number, c: number): tf.Tensor4D => {
  const [b, h, tp, dh] = x.shape
  const n = tp / l
  return tf.slice(x.reshape([b, h, n, l, dh]), [0, 0, 0, l - c, 0], [b, h, n, c, dh]).reshape([b, h, n * c, dh]) as tf.Tensor4D
}

/**
 * Parts per factor. Merged heads take A⁽²⁾ only where A⁽¹⁾ does not reach, so no key is
 * counted twice: strided A⁽²⁾ beyond distance l, fixed summaries of earlier blocks.
 */
const partsOf = (spec: Sparse, factor: Factor) => (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D): Part[] => {
  const l = spec.stride
  if (spec.kind === "sparse-strided") {
    const local = () => bandParts(q, k, v, l, true, stridedLocal(l), false)
    if (factor === 1) return local()
    if (factor === 2) return [stridePart(q, k, v, l, stridedStride(l))]
    return [...local(), stridePart(q, k, v, l, (h, i, j) => stridedStride(l)(h, i, j) && i - j > l)]
  }
  const c = spec.summary
  const n = q.shape[2] / l
  const summaries = Array.from({ length: n * c }, (_, e) => Math.floor(e / c) * l + l - c + (e % c))
  const local = () => bandParts(q, k, v, l, false, fixedLocal(l), false)
  const summary = (visible: Visible) => listPart(q, summaryRows(k, l, c), summaryRows(v, l, c), summaries, visible, false)
  if (factor === 1) return local()
  if (factor === 2) return [summary(fixedSummary(l, c))]
  const earlier: Visible = (h, i, j) => fixedSummary(l, c)(h, i, j) && Math.floor(j / l) < Math.floor(i / l)
  return [...local(), summary(earlier)]
}

/**
 * The same factors as parts for the fused kernel: strided A⁽²⁾ by residue classes mod l
 * (beyond distance l when merged), fixed A⁽¹⁾ as each query's block, fixed summaries gathered
 * (earlier blocks' when merged, else those up to the query).
 */
const fusedPartsOf = (spec: Sparse, factor: Factor, q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D): FusedPart[] => {
  const l = spec.stride
  const t = q.shape[2]
  if (spec.kind === "sparse-strided") {
    const local: FusedPart = { q, k, v, ranges: bandRanges(t, l) }
    if (factor === 1) return [local]
    if (factor === 2) return [residuePart(q, k, v, l, 0, t)]
    return [local, residuePart(q, k, v, l, 2, t)]
  }
  const c = spec.summary
  const tp = Math.ceil(t / l) * l
  const earlier = (i: number) => Math.floor(i / l) * c
  const local: FusedPart = { q, k, v, ranges: blockRanges(t, l) }
  const summary = (own: boolean): FusedPart => ({
    q,
    k: summaryRows(padSeq(k, tp), l, c),
    v: summaryRows(padSeq(v, tp), l, c),
    ranges: rangesOf(t, () => 0, (i) => earlier(i) + (own ? Math.min(c, Math.max(0, (i % l) - (l - c) + 1)) : 0)),
  })
  if (factor === 1) return [local]
  if (factor === 2) return [summary(true)]
  return [local, summary(false)]
}

const apply = (p: ParamView, x: tf.Tensor3D, spec: Sparse, ctx: LayerCtx): tf.Tensor3D => {
  const t = x.shape[1]
  const [q, k0, v0] = projectQkv(p, x, spec, ctx)
  if (partsKind(spec) && fusedPartsApply(ctx, spec.dropout)) {
    const outs = groupsOf(spec, ctx.layer).map((g) =>
      jointFused(fusedPartsOf(spec, g.factor, headSlice(q, g.from, g.to), headSlice(k0, g.from, g.to), headSlice(v0, g.from, g.to))),
    )
    return project(p, outs.length === 1 ? outs[0]! : (tf.concat(outs, 1) as tf.Tensor4D), spec.bias)
  }
  const cached = ctx.kv?.k !== undefined
  const [k, v] = extendCache(ctx, k0, v0)
  if (cached) return project(p, maskedAttention(q, k, v, ctx.offset, sparseVisible(spec, ctx.layer), ctx, spec.dropout), spec.bias)
  const groups: HeadGroup[] = groupsOf(spec, ctx.layer).map((g) => ({ ...g, parts: partsOf(spec, g.factor) }))
  return project(p, groupedAttention(q, k, v, roundUp(t, spec.stride), groups, ctx, spec.dropout), spec.bias)
}

export const sparse: AttentionCompute<Sparse> = { apply }
