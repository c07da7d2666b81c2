import { Schema } from "effect"
import { PositiveInt, Rate } from "../../fields.js"
import type { Dims, Issue, ParamDecls } from "../../kind.js"
import { RMS_EPS } from "../norm/rms.js"

/** The fields every attention kind has, and their defaults in the combinators. */
export const attentionFields = {
  op: Schema.Literal("attention"),
  heads: PositiveInt,
  /** Size of each head; absent: width / heads (which must then divide the width). */
  headDim: Schema.optionalKey(PositiveInt),
  bias: Schema.Boolean,
  dropout: Rate,
  /** RMS-normalise each head's query and key (no gain) before the position rotation; absent: off. */
  qkNorm: Schema.optionalKey(Schema.Boolean),
}

export interface AttentionBaseOptions {
  readonly heads: number
  readonly headDim?: number
  readonly bias?: boolean
  readonly dropout?: number
  /** QK-norm (Dehghani et al. 2023; modded-nanogpt): q, k = rms(q), rms(k) per head, before RoPE. */
  readonly qkNorm?: boolean
}

export const attentionDefaults = (o: AttentionBaseOptions) => ({
  op: "attention" as const,
  heads: o.heads,
  ...(o.headDim === undefined ? {} : { headDim: o.headDim }),
  bias: o.bias ?? true,
  dropout: o.dropout ?? 0,
  // Absent rather than false, so specs without it keep their hashes.
  ...(o.qkNorm ? { qkNorm: true } : {}),
})

interface Heads {
  readonly heads: number
  readonly headDim?: number | undefined
  readonly qkNorm?: boolean | undefined
}

/** The eps of QK-norm's RMS normalisation: the lab's RMSNorm default. */
export const QK_NORM_EPS = RMS_EPS

/** The size of one head. */
export const headDimOf = (spec: Heads, width: number): number => spec.headDim ?? width / spec.heads

/** Width of the concatenated heads: the query/key/value projections' output, the output projection's input. */
export const innerWidth = (spec: Heads, width: number): number => spec.heads * headDimOf(spec, width)

/** Without an explicit head size, the heads split the width evenly. */
export const headIssues = (spec: Heads, dims: Dims): Issue[] =>
  spec.headDim !== undefined || dims.width % spec.heads === 0
    ? []
    : [{ path: ["heads"], message: `${spec.heads} does not divide width ${dims.width}; set headDim to choose the head size` }]

/** "h=4", or "h=3×64" when the head size is explicit; ",qk-norm" when queries and keys are normalised. */
export const headsLabel = (spec: Heads): string =>
  `${spec.headDim === undefined ? `h=${spec.heads}` : `h=${spec.heads}×${spec.headDim}`}${spec.qkNorm ? ",qk-norm" : ""}`

/** Q, K, V projections width → inner and the output projection inner → width, with optional biases. */
export const projectionParams = (inner: number, dims: Dims, bias: boolean) => {
  const std = 0.02
  // GPT-2 scales the init of projections that write into the residual stream by 1/sqrt(2L).
  const outStd = std / Math.sqrt(2 * dims.layers)
  const w = (s: number) => ({ shape: [dims.width, inner], init: { kind: "normal", std: s }, decay: true }) as const
  const zero = { shape: [inner], init: { kind: "zeros" }, decay: false } as const
  return {
    wq: w(std),
    wk: w(std),
    wv: w(std),
    wo: { shape: [inner, dims.width], init: { kind: "normal", std: outStd }, decay: true } as const,
    ...(bias ? { bq: zero, bk: zero, bv: zero, bo: { ...zero, shape: [dims.width] } } : {}),
  } satisfies ParamDecls
}
