import * as tf from "@tensorflow/tfjs"
import { Schema } from "effect"
import { PositiveInt } from "../model/fields.js"
import type { AttentionKind, Dims, Issue, LayerCtx, ParamView } from "../model/kind.js"
import { bandParts, groupedAttention, type HeadGroup, listPart, maskedAttention, type Part, project, projectQkv, roundUp, stridePart, type Visible } from "./blocked.js"
import { type AttentionBaseOptions, attentionDefaults, attentionFields } from "./fields.js"
import { extendCache, projectionParams } from "./full.js"

/**
 * Factorised sparse attention (Child et al. 2019, "Generating Long Sequences with Sparse
 * Transformers", §4.2), causal, with stride l:
 * - strided: A⁽¹⁾ᵢ = {t, …, i}, t = max(0, i − l) (the previous l positions and i itself);
 *   A⁽²⁾ᵢ = {j ≤ i : (i − j) mod l = 0}.
 * - fixed: A⁽¹⁾ᵢ = {j ≤ i : ⌊j/l⌋ = ⌊i/l⌋} (the current block); A⁽²⁾ᵢ = {j ≤ i : j mod l ∈
 *   {l − c, …, l − 1}} (the last c positions of every block, the "summary" columns).
 * `combine` is §4.3's use of the two: "alternate" (layer r uses A⁽ʳ ᵐᵒᵈ ²⁺¹⁾), "merged" (one
 * head attends to A⁽¹⁾ ∪ A⁽²⁾) or "split" (the first ⌈H/2⌉ heads use A⁽¹⁾, the rest A⁽²⁾).
 * A row that sees no key (fixed A⁽²⁾ before the first summary column) outputs zero.
 */
const Combine = Schema.Literals(["alternate", "merged", "split"])
export type Combine = typeof Combine.Type

const common = {
  ...attentionFields,
  stride: PositiveInt,
  combine: Combine,
}
const stridedSchema = Schema.Struct({ ...common, kind: Schema.Literal("sparse-strided") })
const fixedSchema = Schema.Struct({ ...common, kind: Schema.Literal("sparse-fixed"), summary: PositiveInt })
export type SparseStrided = typeof stridedSchema.Type
export type SparseFixed = typeof fixedSchema.Type
type Sparse = SparseStrided | SparseFixed

export interface SparseOptions extends AttentionBaseOptions {
  readonly stride: number
  readonly combine?: Combine
}

/** Which factor(s) a head of a layer uses: 1, 2 or both. */
type Factor = 1 | 2 | "both"

const factorOf = (combine: Combine, heads: number, layer: number, head: number): Factor => {
  if (combine === "merged") return "both"
  if (combine === "alternate") return layer % 2 === 0 ? 1 : 2
  return head < Math.ceil(heads / 2) ? 1 : 2
}

/** The head groups of a layer, each with one factor. */
const groupsOf = (spec: Sparse, layer: number): Array<{ from: number; to: number; factor: Factor }> => {
  if (spec.combine !== "split") return [{ from: 0, to: spec.heads, factor: factorOf(spec.combine, spec.heads, layer, 0) }]
  const half = Math.ceil(spec.heads / 2)
  return [
    { from: 0, to: half, factor: 1 },
    { from: half, to: spec.heads, factor: 2 },
  ]
}

const stridedLocal = (l: number): Visible => (_h, i, j) => j <= i && i - j <= l
const stridedStride = (l: number): Visible => (_h, i, j) => j <= i && (i - j) % l === 0
const fixedLocal = (l: number): Visible => (_h, i, j) => j <= i && Math.floor(j / l) === Math.floor(i / l)
const fixedSummary = (l: number, c: number): Visible => (_h, i, j) => j <= i && j % l >= l - c

/** The kind's pattern for one head of one layer: whether query i sees key j. */
export const sparseVisible = (spec: Sparse, layer: number): Visible => {
  const l = spec.stride
  const [a1, a2] = spec.kind === "sparse-strided" ? [stridedLocal(l), stridedStride(l)] : [fixedLocal(l), fixedSummary(l, spec.summary)]
  return (h, i, j) => {
    const f = factorOf(spec.combine, spec.heads, layer, h)
    return f === 1 ? a1(h, i, j) : f === 2 ? a2(h, i, j) : a1(h, i, j) || a2(h, i, j)
  }
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
  const [b, h, tp, dh] = q.shape
  const n = tp / l
  // The last c positions of every block (padded length), by reshape and slice.
  const summaries = Array.from({ length: n * c }, (_, e) => Math.floor(e / c) * l + l - c + (e % c))
  const last = (x: tf.Tensor4D) => tf.slice(x.reshape([b, h, n, l, dh]), [0, 0, 0, l - c, 0], [b, h, n, c, dh]).reshape([b, h, n * c, dh]) as tf.Tensor4D
  const local = () => bandParts(q, k, v, l, false, fixedLocal(l), false)
  const summary = (visible: Visible) => listPart(q, last(k), last(v), summaries, visible, false)
  if (factor === 1) return local()
  if (factor === 2) return [summary(fixedSummary(l, c))]
  const earlier: Visible = (h, i, j) => fixedSummary(l, c)(h, i, j) && Math.floor(j / l) < Math.floor(i / l)
  return [...local(), summary(earlier)]
}

const base = (o: SparseOptions) => ({
  ...attentionDefaults(o),
  stride: o.stride,
  combine: o.combine ?? "merged",
})
const makeStrided = (o: SparseOptions): SparseStrided => ({ ...base(o), kind: "sparse-strided" })
const makeFixed = (o: SparseOptions & { readonly summary: number }): SparseFixed => ({ ...base(o), kind: "sparse-fixed", summary: o.summary })

const apply = (p: ParamView, x: tf.Tensor3D, spec: Sparse, ctx: LayerCtx): tf.Tensor3D => {
  const t = x.shape[1]
  const [q, k0, v0] = projectQkv(p, x, spec.heads, spec.bias, ctx)
  const cached = ctx.kv?.k !== undefined
  const [k, v] = extendCache(ctx, k0, v0)
  if (cached) return project(p, maskedAttention(q, k, v, ctx.offset, sparseVisible(spec, ctx.layer), ctx, spec.dropout), spec.bias)
  const groups: HeadGroup[] = groupsOf(spec, ctx.layer).map((g) => ({ ...g, parts: partsOf(spec, g.factor) }))
  return project(p, groupedAttention(q, k, v, roundUp(t, spec.stride), groups, ctx, spec.dropout), spec.bias)
}

const check = (spec: Sparse, dims: Dims): Issue[] => [
  ...(dims.width % spec.heads === 0 ? [] : [{ path: ["heads"], message: `${spec.heads} does not divide width ${dims.width}` }]),
  ...(spec.combine === "split" && spec.heads < 2 ? [{ path: ["combine"], message: `"split" needs at least 2 heads, got ${spec.heads}` }] : []),
  ...(spec.kind === "sparse-fixed" && spec.summary > spec.stride
    ? [{ path: ["summary"], message: `${spec.summary} summary positions exceed the block length ${spec.stride}` }]
    : []),
]

/** Keys computed per query (band blocks included, as computed), for the FLOPs count. */
const keysPerQuery = (spec: Sparse, n: number): number => {
  const l = spec.stride
  const [local, far] = spec.kind === "sparse-strided" ? [2 * l, Math.ceil(n / l)] : [l, Math.ceil(n / l) * spec.summary]
  return spec.combine === "merged" ? local + far : Math.max(local, far)
}

const shared = {
  check,
  params: (spec: Sparse, dims: Dims) => projectionParams(dims.width, dims, spec.bias),
  // QKᵀ and AV over the keys each query computes.
  flops: (spec: Sparse, dims: Dims) => 4 * keysPerQuery(spec, dims.context) * dims.width,
  label: (spec: Sparse) =>
    `${spec.kind}(h=${spec.heads},l=${spec.stride}${spec.kind === "sparse-fixed" ? `,c=${spec.summary}` : ""},${spec.combine})`,
  causal: () => true,
  apply,
}

export const sparseStrided: AttentionKind<SparseStrided> & { make: typeof makeStrided } = { schema: stridedSchema, make: makeStrided, ...shared }
export const sparseFixed: AttentionKind<SparseFixed> & { make: typeof makeFixed } = { schema: fixedSchema, make: makeFixed, ...shared }
