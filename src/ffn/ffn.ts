import * as tf from "@tensorflow/tfjs"
import { Schema } from "effect"
import { type ActivationSpec, ActivationSchema, activationModule } from "../activation/index.js"
import { linear } from "../attention/full.js"
import { PositiveNumber, Rate } from "../model/fields.js"
import type { Dims, LayerCtx, ParamDecls, ParamView } from "../model/kind.js"

/** Position-wise feed-forward network: out(act(in(x))), or out(act(gate(x), in(x))) when gated. */
export const FfnSchema = Schema.Struct({
  op: Schema.Literal("ffn"),
  activation: ActivationSchema,
  mult: PositiveNumber,
  bias: Schema.Boolean,
  dropout: Rate,
})
export type FfnSpec = typeof FfnSchema.Type

export interface FfnOptions {
  readonly mult?: number
  readonly bias?: boolean
  readonly dropout?: number
}

export const makeFfn = (activation: ActivationSpec, o: FfnOptions = {}): FfnSpec => ({
  op: "ffn",
  activation,
  mult: o.mult ?? 4,
  bias: o.bias ?? true,
  dropout: o.dropout ?? 0,
})

/**
 * Hidden width. Gated activations use two input projections, so their width is 2/3 of the
 * ungated one (rounded up to a multiple of 8, as llama does with larger multiples) to keep
 * the parameter count equal.
 */
export const ffnHidden = (spec: FfnSpec, width: number): number => {
  const hidden = spec.mult * width
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

export const applyFfn = (p: ParamView, x: tf.Tensor3D, spec: FfnSpec, ctx: LayerCtx): tf.Tensor3D => {
  const [b, t, d] = x.shape
  const x2 = x.reshape([b * t, d]) as tf.Tensor2D
  const act = activationModule(spec.activation)
  const value = linear(p, x2, "w_in", "b_in", spec.bias)
  const hidden = act.gated
    ? act.apply(spec.activation, value, linear(p, x2, "w_gate", "b_gate", spec.bias))
    : act.apply(spec.activation, value)
  const dropped = ctx.dropout(hidden, spec.dropout) as tf.Tensor2D
  return linear(p, dropped, "w_out", "b_out", spec.bias).reshape([b, t, d]) as tf.Tensor3D
}
