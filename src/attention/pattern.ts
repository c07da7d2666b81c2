import * as tf from "@tensorflow/tfjs"
import type { Dims } from "../../dsl/kind.js"
import { headDimOf, innerWidth } from "../../dsl/kinds/attention/fields.js"
import { type AttentionSpec, attentionModule } from "../../dsl/kinds/attention/index.js"
import type { LayerCtx } from "../model/kind.js"
import { attentionApply } from "./index.js"

/**
 * Which keys each query of one head depends on, measured from the computation itself rather
 * than from a description of the pattern: with the output projection cut down to the head's
 * slice, query i's output depends on input position j exactly when the head lets i attend
 * to j (through k_j and v_j; j = i also through q_i). Row i of the result is the gradient
 * norm ‖∂(r·y_i)/∂x_j‖ over j, for random weights, inputs and r. The layer runs on a batch
 * of copies of one sequence, copy b carrying the loss of one query, so one backward pass
 * gives a whole block of rows.
 */
export interface PatternOptions {
  readonly context: number
  readonly layer: number
  readonly head: number
  readonly seed?: number
}

/** Queries per backward pass. */
const ROWS = 64

export const measurePattern = (spec: AttentionSpec, o: PatternOptions): Float32Array => {
  const t = o.context
  const width = spec.heads * 8
  const dh = headDimOf(spec, width)
  if (o.head < 0 || o.head >= spec.heads) throw new Error(`head ${o.head} is not one of the ${spec.heads} heads`)
  const dims: Dims = { vocab: 2, width, context: t, layers: o.layer + 1 }
  const decls = attentionModule(spec).params(spec, dims)
  const kind = attentionApply(spec)
  const seed = o.seed ?? 1
  const inner = innerWidth(spec, width)
  const headRows = tf.tensor2d(Array.from({ length: inner }, (_, r) => (Math.floor(r / dh) === o.head ? 1 : 0)), [inner, 1])
  const params = Object.fromEntries(
    Object.entries(decls).map(([name, d], i) => {
      // Unit-scale activations keep every attended weight far from underflow, so exactly the
      // masked pairs have a zero gradient.
      const fanIn = d.shape.length === 1 ? 100 : d.shape[d.shape.length - 2]!
      const value = tf.randomNormal([...d.shape], 0, 1 / Math.sqrt(fanIn), "float32", seed * 1000 + i)
      return [name, name === "wo" ? tf.mul(value, headRows) : value]
    }),
  )
  const x = tf.randomNormal([1, t, width], 0, 1, "float32", seed)
  const r = tf.randomNormal([width], 0, 1, "float32", seed + 1)
  const ctx: LayerCtx = { dims, layer: o.layer, training: false, position: {}, offset: 0, dropout: (z) => z }
  const out = new Float32Array(t * t)
  for (let q0 = 0; q0 < t; q0 += ROWS) {
    const n = Math.min(ROWS, t - q0)
    const rows = tf.tidy(() => {
      const pick = tf.oneHot(tf.range(q0, q0 + n, 1, "int32"), t).reshape([n, t, 1])
      const xs = tf.tile(x, [n, 1, 1]) as tf.Tensor3D
      const g = tf.grad((xb: tf.Tensor) => tf.sum(tf.mul(tf.mul(kind.apply((name) => params[name]!, xb as tf.Tensor3D, spec, ctx), pick), r)))(xs)
      return tf.sqrt(tf.sum(tf.square(g), 2)).dataSync() as Float32Array
    })
    out.set(rows, q0 * t)
  }
  tf.dispose([x, r, headRows, ...Object.values(params)])
  return out
}

/** The measured pattern as booleans: query i depends on key j (masked pairs have exactly zero gradient). */
export const attends = (pattern: Float32Array, t: number): boolean[][] =>
  Array.from({ length: t }, (_, i) => Array.from(pattern.subarray(i * t, (i + 1) * t), (g) => g > 0))
