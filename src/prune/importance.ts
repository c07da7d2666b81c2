import * as tf from "@tensorflow/tfjs"
import { ffnHidden } from "../../dsl/ffn.js"
import { headDimOf } from "../../dsl/kinds/attention/fields.js"
import type { HostBatch } from "../eval/evaluate.js"
import type { Batch, Model, ParamValues } from "../model/compile.js"
import { attentionUnits, ffnUnits } from "../experiment/prune/units.js"

/**
 * Scores measured on calibration batches: the gradient of the loss with respect to a
 * multiplier on each head's or FFN neuron's output (Michel et al.'s head importance, and the
 * first-order Taylor score of a neuron, Σ a·∂L/∂a), and the norms of what flows into each
 * matrix (Wanda's ‖X_j‖₂, a neuron's activation norm). A head's output enters the residual
 * stream only through its rows of the output projection, so scaling those rows by ξ_h is
 * scaling the head; the same holds for a neuron and its row of w_out.
 */
export type Structure = "heads" | "neurons"

const toBatch = (b: HostBatch): Batch => ({
  tokens: tf.tensor2d(b.tokens, [b.batch, b.context + 1], "int32"),
  mask: tf.tensor2d(b.mask, [b.batch, b.context], "float32"),
})

/** Each node of the structure: the output projection its units scale, their count, and rows per unit. */
export const scaledUnits = (model: Model, which: Structure) =>
  which === "heads"
    ? attentionUnits(model.spec).map((u) => ({ weight: `${u.prefix}.wo`, count: u.spec.heads, rows: headDimOf(u.spec, model.spec.width) }))
    : ffnUnits(model.spec).map((u) => ({ weight: `${u.prefix}.w_out`, count: ffnHidden(u.spec, model.spec.width), rows: 1 }))

/** The weights with unit j of node i scaled by multipliers[i][j]. */
export const scaleUnits = (model: Model, params: ParamValues, which: Structure, multipliers: ReadonlyArray<tf.Tensor1D>): ParamValues => {
  const scaled: Record<string, tf.Tensor> = { ...params }
  scaledUnits(model, which).forEach((u, i) => {
    const perRow = u.rows === 1 ? multipliers[i]! : tf.reshape(tf.tile(tf.reshape(multipliers[i]!, [u.count, 1]), [1, u.rows]), [u.count * u.rows])
    scaled[u.weight] = tf.mul(params[u.weight]!, tf.reshape(perRow, [u.count * u.rows, 1]))
  })
  return scaled
}

/** E|∂L/∂ξ| over the batches for every unit (head or neuron), by node: the mean over batches of each batch's |gradient|. */
export const outputGradients = (model: Model, params: ParamValues, batches: ReadonlyArray<HostBatch>, which: Structure): number[][] => {
  const units = scaledUnits(model, which)
  const sums = units.map((u) => new Float64Array(u.count))
  for (const hb of batches) {
    tf.tidy(() => {
      const batch = toBatch(hb)
      const ones = units.map((u) => tf.ones([u.count]) as tf.Tensor1D)
      const grads = tf.grads((...xi: tf.Tensor[]) => model.loss(scaleUnits(model, params, which, xi as tf.Tensor1D[]), batch))(ones)
      grads.forEach((g, i) => {
        const d = g.dataSync()
        for (let j = 0; j < d.length; j++) sums[i]![j]! += Math.abs(d[j]!)
      })
    })
  }
  return sums.map((s) => Array.from(s, (x) => x / batches.length))
}

/** ‖X_j‖₂ over every calibration token, for each input feature j of each named weight's matrix product. */
export const inputNorms = (model: Model, params: ParamValues, batches: ReadonlyArray<HostBatch>, weights: ReadonlyArray<string>): Map<string, Float64Array> => {
  const wanted = new Set(weights)
  const sums = new Map<string, Float64Array>()
  const probe = (weight: string, input: tf.Tensor2D) => {
    if (!wanted.has(weight)) return
    const sq = tf.sum(tf.square(input), 0).dataSync()
    const acc = sums.get(weight) ?? new Float64Array(sq.length)
    for (let j = 0; j < sq.length; j++) acc[j]! += sq[j]!
    sums.set(weight, acc)
  }
  for (const hb of batches) {
    tf.tidy(() => {
      const batch = toBatch(hb)
      const [b, t1] = batch.tokens.shape
      model.apply(params, tf.slice(batch.tokens, [0, 0], [b, t1 - 1]), { probe })
    })
  }
  const missing = weights.filter((w) => !sums.has(w))
  if (missing.length > 0) throw new Error(`no input reached ${missing.slice(0, 3).join(", ")} in the forward pass`)
  return new Map([...sums].map(([w, s]) => [w, s.map(Math.sqrt)]))
}

/** Each FFN neuron's activation norm ‖a_j‖₂ over the calibration tokens, by node. */
export const activationNorms = (model: Model, params: ParamValues, batches: ReadonlyArray<HostBatch>): number[][] => {
  const names = scaledUnits(model, "neurons").map((u) => u.weight)
  const norms = inputNorms(model, params, batches, names)
  return names.map((n) => Array.from(norms.get(n)!))
}
