import { Schema } from "effect"
import { PositiveInt } from "../../fields.js"
import type { AttentionDescription, Dims, Issue, ParamDecls } from "../../kind.js"
import { type AttentionBaseOptions, attentionDefaults, attentionFields, headIssues, headsLabel, innerWidth, projectionParams } from "./fields.js"

/**
 * Linformer (Wang et al. 2020, "Linformer: Self-Attention with Linear Complexity"): keys and
 * values are projected along the sequence axis to length k, head_i = softmax(Q_i (E_i K_i)ᵀ /
 * √d) (F_i V_i), with E_i, F_i [k, n] (n = context; a shorter sequence uses their first
 * columns). `sharing` is §4's options: "none" (E_i, F_i per head), "headwise" (one E and one
 * F per layer), "kv" (one E = F per layer) and "layerwise" (one E = F for every layer, stored
 * once as `shared.linformer.k<k>.e`).
 *
 * Every output mixes all positions, later ones included, so `linformer` is not causal: the
 * decoder refuses it unless `allowNonCausal` is set, and it cannot decode with a cache.
 *
 * `linformer-causal` keeps the projection but applies it only to complete earlier blocks of
 * `block` positions: a query in block r sees the k keys E[:, :rb]·K[:rb] (and F for values)
 * and, fully, the causal part of its own block.
 */
const Sharing = Schema.Literals(["none", "headwise", "kv", "layerwise"])
export type Sharing = typeof Sharing.Type

const common = {
  ...attentionFields,
  k: PositiveInt,
  sharing: Sharing,
}
const linformerSchema = Schema.Struct({ ...common, kind: Schema.Literal("linformer") })
const causalSchema = Schema.Struct({ ...common, kind: Schema.Literal("linformer-causal"), block: PositiveInt })
export type Linformer = typeof linformerSchema.Type
export type LinformerCausal = typeof causalSchema.Type
export type AnyLinformer = Linformer | LinformerCausal

export interface LinformerOptions extends AttentionBaseOptions {
  readonly k: number
  readonly sharing?: Sharing
}

const base = (o: LinformerOptions) => ({
  ...attentionDefaults(o),
  k: o.k,
  sharing: o.sharing ?? "headwise",
})
const makeLinformer = (o: LinformerOptions): Linformer => ({ ...base(o), kind: "linformer" })
const makeCausal = (o: LinformerOptions & { readonly block: number }): LinformerCausal => ({ ...base(o), kind: "linformer-causal", block: o.block })

/** Parameter names beginning with "/" are model-wide rather than the layer's own. */
export const sharedName = (k: number): string => `/shared.linformer.k${k}.e`

const params = (spec: AnyLinformer, dims: Dims): ParamDecls => {
  const n = dims.context
  // Each compressed key sums up to n keys; 1/√n keeps its scale that of one key.
  const decl = (shape: number[]) => ({ shape, init: { kind: "normal", std: 1 / Math.sqrt(n) }, decay: true, alongSequence: true }) as const
  const own = projectionParams(innerWidth(spec, dims.width), dims, spec.bias)
  switch (spec.sharing) {
    case "none":
      return { ...own, e: decl([spec.heads, spec.k, n]), f: decl([spec.heads, spec.k, n]) }
    case "headwise":
      return { ...own, e: decl([spec.k, n]), f: decl([spec.k, n]) }
    case "kv":
      return { ...own, e: decl([spec.k, n]) }
    case "layerwise":
      return { ...own, [sharedName(spec.k)]: decl([spec.k, n]) }
  }
}

const check = (spec: AnyLinformer, dims: Dims): Issue[] => [
  ...headIssues(spec, dims),
  ...(spec.k > dims.context ? [{ path: ["k"], message: `projecting ${dims.context} positions to k=${spec.k} > ${dims.context} saves nothing` }] : []),
]

export const linformer: AttentionDescription<Linformer> & { make: typeof makeLinformer } = {
  schema: linformerSchema,
  make: makeLinformer,
  check,
  params,
  // E·K and F·V (k·D per token each), then QKᵀ and AV over k keys.
  flops: (spec, dims) => 8 * spec.k * innerWidth(spec, dims.width),
  label: (spec) => `linformer(${headsLabel(spec)},k=${spec.k},${spec.sharing})`,
  causal: () => false,
  visible: () => () => true,
}

export const linformerCausal: AttentionDescription<LinformerCausal> & { make: typeof makeCausal } = {
  schema: causalSchema,
  make: makeCausal,
  check: (spec, dims) => [
    ...check(spec, dims),
    ...(spec.block > dims.context ? [{ path: ["block"], message: `block ${spec.block} exceeds the context ${dims.context}` }] : []),
  ],
  params,
  // As linformer, plus QKᵀ and AV over the block computed for each query.
  flops: (spec, dims) => 8 * spec.k * innerWidth(spec, dims.width) + 4 * spec.block * innerWidth(spec, dims.width),
  label: (spec) => `linformer-causal(${headsLabel(spec)},k=${spec.k},b=${spec.block},${spec.sharing})`,
  causal: () => true,
  // Earlier whole blocks reach every query through their compressed keys, so it sees all of its past.
  visible: () => (_h, i, j) => j <= i,
}
