import { Schema } from "effect"
import { PositiveInt, PositiveNumber, Rate } from "./fields.js"
import type { Dims, Issue, ParamDecls } from "./kind.js"
import { type ActivationSpec, activationModule } from "./kinds/activation/index.js"

/**
 * Position-wise feed-forward network: out(act(in(x))), or out(act(gate(x), in(x))) when gated.
 * Its hidden width is `hidden` exactly, or derived from the multiple `mult` of the width.
 * The activation is decoded by its own registry, so this schema holds the other fields.
 */
export const FfnFields = {
  op: Schema.Literal("ffn"),
  mult: Schema.optionalKey(PositiveNumber),
  hidden: Schema.optionalKey(PositiveInt),
  bias: Schema.Boolean,
  dropout: Rate,
}

export interface FfnSpec {
  readonly op: "ffn"
  readonly activation: ActivationSpec
  readonly mult?: number
  readonly hidden?: number
  readonly bias: boolean
  readonly dropout: number
}

export interface FfnOptions {
  /** Hidden width as a multiple of the model width (default 4). */
  readonly mult?: number
  /** The exact hidden width; replaces `mult`. */
  readonly hidden?: number
  readonly bias?: boolean
  readonly dropout?: number
}

export const makeFfn = (activation: ActivationSpec, o: FfnOptions = {}): FfnSpec => ({
  op: "ffn",
  activation,
  ...(o.hidden === undefined ? { mult: o.mult ?? 4 } : { hidden: o.hidden }),
  bias: o.bias ?? true,
  dropout: o.dropout ?? 0,
})

export const ffnIssues = (spec: FfnSpec): Issue[] =>
  (spec.mult === undefined) === (spec.hidden === undefined)
    ? [{ path: [], message: "give the hidden width either as mult (a multiple of the width) or as hidden (exact), not both or neither" }]
    : []

/**
 * Hidden width. Without `hidden`, gated activations use two input projections, so their width
 * is 2/3 of the ungated one (rounded up to a multiple of 8, as llama does with larger
 * multiples) to keep the parameter count equal.
 */
export const ffnHidden = (spec: FfnSpec, width: number): number => {
  if (spec.hidden !== undefined) return spec.hidden
  const hidden = spec.mult! * width
  return activationModule(spec.activation).gated ? Math.ceil((2 * hidden) / 3 / 8) * 8 : Math.round(hidden)
}

export const ffnParams = (spec: FfnSpec, dims: Dims): ParamDecls => {
  const hidden = ffnHidden(spec, dims.width)
  const gated = activationModule(spec.activation).gated
  const matrix = (rows: number, cols: number, std: number) =>
    ({ shape: [rows, cols], init: { kind: "normal", std }, decay: true }) as const
  const zeros = (n: number) => ({ shape: [n], init: { kind: "zeros" }, decay: false }) as const
  return {
    w_in: matrix(dims.width, hidden, 0.02),
    ...(gated ? { w_gate: matrix(dims.width, hidden, 0.02) } : {}),
    w_out: matrix(hidden, dims.width, 0.02 / Math.sqrt(2 * dims.layers)),
    ...(spec.bias ? { b_in: zeros(hidden), ...(gated ? { b_gate: zeros(hidden) } : {}), b_out: zeros(dims.width) } : {}),
  }
}
