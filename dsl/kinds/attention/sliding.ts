import { Schema } from "effect"
import { NonNegativeInt, PositiveInt } from "../../fields.js"
import type { AttentionDescription, Dims, Issue, Visible } from "../../kind.js"
import { type AttentionBaseOptions, attentionDefaults, attentionFields, headIssues, headsLabel, innerWidth, projectionParams } from "./fields.js"

/**
 * Sliding-window and Longformer attention (Beltagy et al. 2020, "Longformer: The
 * Long-Document Transformer", §3.1), causal as in its autoregressive language model: query i
 * sees the current token and the w previous ones at dilation d, j ∈ {i, i−d, …, i−w·d}.
 * `window` is one w for every layer or one per layer (the paper grows w with depth);
 * `dilation` is one d or one per head (the paper dilates some heads of the upper layers).
 *
 * `longformer` adds global attention at the chosen positions (e.g. [0]): every later token
 * attends to them, and each attends to all earlier tokens. As in the paper, global rows use
 * their own projections Q_g, K_g, V_g (params wqg, wkg, wvg); the other rows see the global
 * tokens' ordinary keys and values.
 */
const Sizes = Schema.Union([PositiveInt, Schema.Array(PositiveInt).check(Schema.isMinLength(1))])

const common = {
  ...attentionFields,
  window: Sizes,
  dilation: Sizes,
}
const slidingSchema = Schema.Struct({ ...common, kind: Schema.Literal("sliding-window") })
const longformerSchema = Schema.Struct({ ...common, kind: Schema.Literal("longformer"), global: Schema.Array(NonNegativeInt).check(Schema.isMinLength(1)) })
export type SlidingWindow = typeof slidingSchema.Type
export type Longformer = typeof longformerSchema.Type
export type Sliding = SlidingWindow | Longformer

export interface SlidingOptions extends AttentionBaseOptions {
  readonly window: number | ReadonlyArray<number>
  readonly dilation?: number | ReadonlyArray<number>
}

const base = (o: SlidingOptions) => ({
  ...attentionDefaults(o),
  window: o.window,
  dilation: o.dilation ?? 1,
})
const makeSliding = (o: SlidingOptions): SlidingWindow => ({ ...base(o), kind: "sliding-window" })
const makeLongformer = (o: SlidingOptions & { readonly global: ReadonlyArray<number> }): Longformer => ({ ...base(o), kind: "longformer", global: o.global })

export const pick = (sizes: number | ReadonlyArray<number>, index: number): number => (typeof sizes === "number" ? sizes : sizes[index]!)
export const maxDilation = (spec: Sliding): number => (typeof spec.dilation === "number" ? spec.dilation : Math.max(...spec.dilation))

/** The window of head h in layer `layer`: j ∈ {i, i−d, …, i−w·d}. */
export const windowVisible = (spec: Sliding, layer: number): Visible => {
  const w = pick(spec.window, layer)
  return (h, i, j) => {
    const d = pick(spec.dilation, h)
    return j <= i && i - j <= w * d && (i - j) % d === 0
  }
}

/** The whole pattern of a non-global query: its window and the global tokens up to it. */
export const slidingVisible = (spec: Sliding, layer: number): Visible => {
  const inWindow = windowVisible(spec, layer)
  const global = new Set(spec.kind === "longformer" ? spec.global : [])
  return (h, i, j) => inWindow(h, i, j) || (global.has(j) && j <= i)
}

const globalParams = (inner: number, dims: Dims, bias: boolean) => {
  const p = projectionParams(inner, dims, bias)
  return { wqg: p.wq, wkg: p.wk, wvg: p.wv, ...(bias ? { bqg: p.bq!, bkg: p.bk!, bvg: p.bv! } : {}) }
}

const check = (spec: Sliding, dims: Dims): Issue[] => {
  const issues: Issue[] = [...headIssues(spec, dims)]
  if (typeof spec.window !== "number" && spec.window.length !== dims.layers)
    issues.push({ path: ["window"], message: `${spec.window.length} window sizes for ${dims.layers} layers; give one per layer or a single one` })
  if (typeof spec.dilation !== "number" && spec.dilation.length !== spec.heads)
    issues.push({ path: ["dilation"], message: `${spec.dilation.length} dilations for ${spec.heads} heads; give one per head or a single one` })
  if (spec.kind === "longformer") {
    spec.global.forEach((g, i) => {
      if (g >= dims.context) issues.push({ path: ["global", i], message: `global position ${g} is outside the context ${dims.context}` })
      if (i > 0 && g <= spec.global[i - 1]!) issues.push({ path: ["global", i], message: "global positions must be strictly increasing" })
    })
  }
  return issues
}

const label = (spec: Sliding): string => {
  const list = (s: number | ReadonlyArray<number>) => (typeof s === "number" ? `${s}` : `[${s.join(",")}]`)
  const dilation = spec.dilation === 1 ? "" : `,d=${list(spec.dilation)}`
  const global = spec.kind === "longformer" ? `,g=[${spec.global.join(",")}]` : ""
  return `${spec.kind}(${headsLabel(spec)},w=${list(spec.window)}${dilation}${global})`
}

const shared = {
  check,
  // QKᵀ and AV over the band's 2W keys (widest layer) and the global keys, plus the global rows'
  // attention over the whole context, which amortises to one more key per global per token.
  flops: (spec: Sliding, dims: Dims) => {
    const widest = typeof spec.window === "number" ? spec.window : Math.max(...spec.window)
    const g = spec.kind === "longformer" ? spec.global.length : 0
    return 4 * (2 * Math.min(widest * maxDilation(spec), dims.context) + 2 * g) * innerWidth(spec, dims.width)
  },
  label,
  causal: () => true,
  // Global rows attend to every earlier token.
  visible: (spec: Sliding, layer: number): Visible => {
    const ordinary = slidingVisible(spec, layer)
    const global = new Set(spec.kind === "longformer" ? spec.global : [])
    return (h, i, j) => ordinary(h, i, j) || (global.has(i) && j <= i)
  },
}

export const slidingWindow: AttentionDescription<SlidingWindow> & { make: typeof makeSliding } = {
  schema: slidingSchema,
  make: makeSliding,
  params: (spec, dims) => projectionParams(innerWidth(spec, dims.width), dims, spec.bias),
  ...shared,
}

export const longformer: AttentionDescription<Longformer> & { make: typeof makeLongformer } = {
  schema: longformerSchema,
  make: makeLongformer,
  params: (spec, dims) => {
    const inner = innerWidth(spec, dims.width)
    return { ...projectionParams(inner, dims, spec.bias), ...globalParams(inner, dims, spec.bias) }
  },
  ...shared,
}
