import * as tf from "@tensorflow/tfjs"
import { gradients } from "../backend/gradients.js"

/**
 * Activation checkpointing: y = f(x) keeping none of f's intermediates for the backward pass.
 * The forward pass runs as a custom gradient's does, unrecorded and tidied to its output; the
 * gradient runs f again on the saved input and differentiates that with respect to x and
 * `params`, every tensor f reads that needs a gradient (a custom gradient reaches only the
 * tensors passed to it). f must compute the same function both times: the same dropout masks.
 */
export const recompute = <T extends tf.Tensor>(f: (x: T) => T, x: T, params: ReadonlyArray<tf.Tensor>): T => {
  const others = [...new Set(params)]
  const op = tf.customGrad((...args) => {
    // The engine disposes the pass's tensors, the input among them, unless saved (a clone sharing its buffer).
    ;(args[args.length - 1] as tf.GradSaveFunc)([x])
    return {
      value: f(x),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const input = saved[0] as T
        return gradientsOf(() => f(input), [input, ...others], dy)
      },
    }
  }) as (...xs: tf.Tensor[]) => T
  return op(x, ...others)
}

/** Gradients of f's output (times dy) with respect to xs, zero for those it does not read. */
const gradientsOf = (f: () => tf.Tensor, xs: tf.Tensor[], dy: tf.Tensor): tf.Tensor[] => {
  const engine = tf.engine()
  // Inside another gradient's backward pass, a gradient computation starts a fresh tape and
  // clears the engine's reference to the outer one when done, though the outer pass (tfjs's
  // own) still disposes its tape from it.
  const outer = engine.state.activeTape
  try {
    const { value, grads } = gradients(f, xs, dy)
    value.dispose()
    return grads.map((g, i) => g ?? tf.zerosLike(xs[i]!))
  } finally {
    engine.state.activeTape = outer
  }
}
