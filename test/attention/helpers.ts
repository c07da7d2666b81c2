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
