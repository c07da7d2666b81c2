import * as tf from "@tensorflow/tfjs"
import type { FfnSpec } from "../../dsl/ffn.js"
import { activationModule } from "../../dsl/kinds/activation/index.js"
import { activationApply } from "../activation/index.js"
import { linear } from "../attention/projection.js"
import type { LayerCtx, ParamView } from "../model/kind.js"

/** out(act(in(x))), or out(act(gate(x), in(x))) when gated. */
export const applyFfn = (p: ParamView, x: tf.Tensor3D, spec: FfnSpec, ctx: LayerCtx): tf.Tensor3D => {
  const [b, t, d] = x.shape
  const x2 = x.reshape([b * t, d]) as tf.Tensor2D
  const act = activationApply(spec.activation)
  const gated = activationModule(spec.activation).gated
  // ReLU runs in the input projection's matmul epilogue rather than as a pass of its own.
  const relu = !gated && act.epilogue === "relu"
  const value = linear(p, x2, "w_in", "b_in", spec.bias, relu)
  const hidden = gated
    ? act.apply(spec.activation, value, linear(p, x2, "w_gate", "b_gate", spec.bias))
    : relu
      ? value
      : act.apply(spec.activation, value)
  const dropped = ctx.dropout(hidden, spec.dropout) as tf.Tensor2D
  return linear(p, dropped, "w_out", "b_out", spec.bias).reshape([b, t, d]) as tf.Tensor3D
}
