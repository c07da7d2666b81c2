import { Schema } from "effect"
import { PositiveInt } from "../../fields.js"
import type { AttentionDescription, Dims, Issue, Visible } from "../../kind.js"
import { type AttentionBaseOptions, attentionDefaults, attentionFields, headIssues, headsLabel, innerWidth, projectionParams } from "./fields.js"

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
export type Sparse = SparseStrided | SparseFixed

export interface SparseOptions extends AttentionBaseOptions {
  readonly stride: number
  readonly combine?: Combine
}

/** Which factor(s) a head of a layer uses: 1, 2 or both. */
export type Factor = 1 | 2 | "both"

const factorOf = (combine: Combine, heads: number, layer: number, head: number): Factor => {
  if (combine === "merged") return "both"
  if (combine === "alternate") return layer % 2 === 0 ? 1 : 2
  return head < Math.ceil(heads / 2) ? 1 : 2
}

/** The head groups of a layer, each with one factor. */
export const groupsOf = (spec: Sparse, layer: number): Array<{ from: number; to: number; factor: Factor }> => {
  if (spec.combine !== "split") return [{ from: 0, to: spec.heads, factor: factorOf(spec.combine, spec.heads, layer, 0) }]
  const half = Math.ceil(spec.heads / 2)
  return [
    { from: 0, to: half, factor: 1 },
    { from: half, to: spec.heads, factor: 2 },
  ]
}

export const stridedLocal = (l: number): Visible => (_h, i, j) => j <= i && i - j <= l
export const stridedStride = (l: number): Visible => (_h, i, j) => j <= i && (i - j) % l === 0
export const fixedLocal = (l: number): Visible => (_h, i, j) => j <= i && Math.floor(j / l) === Math.floor(i / l)
export const fixedSummary = (l: number, c: number): Visible => (_h, i, j) => j <= i && j % l >= l - c

/** The kind's pattern for one head of one layer: whether query i sees key j. */
export const sparseVisible = (spec: Sparse, layer: number): Visible => {
  const l = spec.stride
  const [a1, a2] = spec.kind === "sparse-strided" ? [stridedLocal(l), stridedStride(l)] : [fixedLocal(l), fixedSummary(l, spec.summary)]
  return (h, i, j) => {
    const f = factorOf(spec.combine, spec.heads, layer, h)
    return f === 1 ? a1(h, i, j) : f === 2 ? a2(h, i, j) : a1(h, i, j) || a2(h, i, j)
  }
}

const base = (o: SparseOptions) => ({
  ...attentionDefaults(o),
  stride: o.stride,
  combine: o.combine ?? "merged",
})
const makeStrided = (o: SparseOptions): SparseStrided => ({ ...base(o), kind: "sparse-strided" })
const makeFixed = (o: SparseOptions & { readonly summary: number }): SparseFixed => ({ ...base(o), kind: "sparse-fixed", summary: o.summary })

const check = (spec: Sparse, dims: Dims): Issue[] => [
  ...headIssues(spec, dims),
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
  params: (spec: Sparse, dims: Dims) => projectionParams(innerWidth(spec, dims.width), dims, spec.bias),
  // QKᵀ and AV over the keys each query computes.
  flops: (spec: Sparse, dims: Dims) => 4 * keysPerQuery(spec, dims.context) * innerWidth(spec, dims.width),
  label: (spec: Sparse) =>
    `${spec.kind}(${headsLabel(spec)},l=${spec.stride}${spec.kind === "sparse-fixed" ? `,c=${spec.summary}` : ""},${spec.combine})`,
  causal: () => true,
  visible: sparseVisible,
}

export const sparseStrided: AttentionDescription<SparseStrided> & { make: typeof makeStrided } = { schema: stridedSchema, make: makeStrided, ...shared }
export const sparseFixed: AttentionDescription<SparseFixed> & { make: typeof makeFixed } = { schema: fixedSchema, make: makeFixed, ...shared }
