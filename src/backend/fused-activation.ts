import * as tf from "@tensorflow/tfjs"

/**
 * FFN activations as single kernels, where a backend has them (the native one does): one
 * pass forward, one pass backward (dy·f′(x)), and only x kept in between. Composed of tfjs
 * ops, autodiff keeps every intermediate of the formula for the backward pass and runs one
 * kernel per op; for the erf GELU in the ablation model that is about 96 MiB per layer.
 */
export const FUSED_ACTIVATION = "FusedActivation"
export const FUSED_ACTIVATION_GRAD = "FusedActivationGrad"

/** The kernels' op codes (native/kernels.h ActOp). */
export const FUSED_OPS = { gelu: 0, "gelu-tanh": 1, swish: 2 } as const
export type FusedOp = keyof typeof FUSED_OPS

tf.registerGradient({
  kernelName: FUSED_ACTIVATION,
  inputsToSave: ["x"],
  gradFunc: (dy, saved, attrs) => ({
    x: () => tf.engine().runKernel(FUSED_ACTIVATION_GRAD, { x: saved[0]!, dy: dy as tf.Tensor }, attrs) as tf.Tensor,
  }),
})

/** f(x) by the current backend's fused kernel, or undefined where it has none (compose the ops then). */
export const fusedActivation = (op: FusedOp, x: tf.Tensor, alpha = 0): tf.Tensor | undefined =>
  tf.getKernel(FUSED_ACTIVATION, tf.getBackend()) === undefined
    ? undefined
    : (tf.engine().runKernel(FUSED_ACTIVATION, { x }, { op: FUSED_OPS[op], alpha }) as tf.Tensor)
