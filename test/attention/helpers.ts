import * as tf from "@tensorflow/tfjs"
import { paramName } from "../../dsl/params.js"
import type { Dims } from "../../dsl/kind.js"
import { attentionModule, type AttentionSpec } from "../../dsl/kinds/attention/index.js"
import type { LayerCtx, ParamView, PositionHooks } from "../../src/model/kind.js"

/** Random parameters for one attention layer, larger than the init so patterns matter. */
export const randomParams = (spec: AttentionSpec, dims: Dims, seed: number): Record<string, tf.Tensor> => {
  const decls = attentionModule(spec).params(spec, dims)
  return Object.fromEntries(
    Object.entries(decls).map(([name, d], i) => [paramName("layer", name), tf.randomNormal([...d.shape], 0, d.shape.length === 1 ? 0.1 : 0.4, "float32", seed * 100 + i)]),
  )
}

export const viewOf =
  (params: Record<string, tf.Tensor>): ParamView =>
  (name) => {
    const t = params[paramName("layer", name)]
    if (t === undefined) throw new Error(`missing ${name}`)
    return t
  }

export const ctxOf = (dims: Dims, layer: number, position: PositionHooks = {}): LayerCtx => ({
  dims,
  layer,
  training: false,
  position,
  offset: 0,
  dropout: (x) => x,
})

/** Max absolute difference between two tensors. */
export const maxDiff = (a: tf.Tensor, b: tf.Tensor): number => tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!)

/**
 * For each of `values` (changed in place and restored), the largest difference between the
 * kernel's gradient and float64 central differences of `loss`, over the largest difference
 * quotient: float32 against float64 (error about eps² plus 1e-16/eps), so float32 rounding
 * dominates.
 */
export const centralDifferenceErrors = (values: Float64Array[], grads: ReadonlyArray<ArrayLike<number>>, loss: () => number, eps = 1e-6): number[] =>
  values.map((x, which) => {
    const kernel = grads[which]!
    let worst = 0
    let largest = 0
    for (let e = 0; e < x.length; e++) {
      const keep = x[e]!
      x[e] = keep + eps
      const up = loss()
      x[e] = keep - eps
      const down = loss()
      x[e] = keep
      const numeric = (up - down) / (2 * eps)
      worst = Math.max(worst, Math.abs(kernel[e]! - numeric))
      largest = Math.max(largest, Math.abs(numeric))
    }
    return worst / largest
  })
