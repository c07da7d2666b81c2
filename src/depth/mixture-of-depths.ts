import * as tf from "@tensorflow/tfjs"
import { isRouted, type MixtureOfDepths, routedTokens, routingFlops } from "../../dsl/kinds/depth/mixture-of-depths.js"
import type { DepthCosts } from "../../dsl/costs.js"
import { type DecoderSpec, dimsOf } from "../../dsl/nodes.js"
import { withVaryingRows } from "../backend/varying-rows.js"
import type { DepthCompute, DepthContext } from "./compute.js"
import { placeRows, rowsOf } from "./rows.js"
import type { DepthTrace } from "./trace.js"

/**
 * Mixture-of-depths. In a routed block, the chosen positions of each row are gathered (in
 * position order) into a shorter sequence, run through the block, and the block's change,
 * times sigmoid(router score), is added back at their positions; the others pass unchanged.
 * Training chooses the top ⌈capacity·T⌉ router scores of each row (not causal) and trains the
 * predictor on those choices; evaluation and generation choose the positions whose predictor
 * says yes, a decision that depends on nothing but the position's own hidden state.
 */

/** The identity forward, zero gradient: the predictor learns from the hidden state without shaping it. */
const stopGradient = tf.customGrad((x, save) => {
  void save
  return { value: tf.clone(x as tf.Tensor), gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy) }
}) as (x: tf.Tensor2D) => tf.Tensor2D

/** Per row, the positions with the k highest scores, in position order (ties: the earlier position). */
const topK = (scores: Float32Array, rows: number, length: number, k: number): number[][] =>
  Array.from({ length: rows }, (_, row) =>
    Array.from({ length }, (_, j) => j)
      .sort((p, q) => scores[row * length + q]! - scores[row * length + p]! || p - q)
      .slice(0, k)
      .sort((p, q) => p - q),
  )

const above = (logits: Float32Array, rows: number, length: number): number[][] =>
  Array.from({ length: rows }, (_, row) => Array.from({ length }, (_, j) => j).filter((j) => logits[row * length + j]! > 0))

const routed = (policy: MixtureOfDepths, ctx: DepthContext, i: number, x: tf.Tensor3D, aux: tf.Scalar[]): tf.Tensor3D => {
  const [b, t, d] = x.shape
  const n = b * t
  const flat = x.reshape([n, d]) as tf.Tensor2D
  const gate = tf.sigmoid(tf.matMul(flat, ctx.param(i, "router.weight") as tf.Tensor2D)) as tf.Tensor2D
  const hidden = tf.relu(tf.add(tf.matMul(stopGradient(flat), ctx.param(i, "predictor.w1") as tf.Tensor2D), ctx.param(i, "predictor.b1")))
  const predicted = tf.add(tf.matMul(hidden, ctx.param(i, "predictor.w2") as tf.Tensor2D), ctx.param(i, "predictor.b2")) as tf.Tensor2D
  ctx.trace?.spend(n * routingFlops(policy, dimsOf(ctx.spec)))
  let chosen: number[][]
  if (ctx.training) {
    chosen = topK(gate.dataSync() as Float32Array, b, t, routedTokens(policy, t))
    const labels = new Float32Array(n)
    chosen.forEach((ps, row) => ps.forEach((p) => (labels[row * t + p] = 1)))
    aux.push(tf.losses.sigmoidCrossEntropy(tf.tensor2d(labels, [n, 1]), predicted) as tf.Scalar)
  } else {
    chosen = above(predicted.dataSync() as Float32Array, b, t)
  }
  const k = Math.max(...chosen.map((c) => c.length))
  if (k === 0) return x
  if (ctx.cache && b > 1) throw new Error("mixture-of-depths: decoding with a cache takes one sequence at a time")
  // Rows shorter than k are padded at their end, which causal attention keeps from the real positions.
  const slots = chosen.flatMap((ps, row) => Array.from({ length: k }, (_, j) => (j < ps.length ? row * t + ps[j]! : n)))
  const padded = (m: tf.Tensor2D) => tf.concat([m, tf.zeros([1, m.shape[1]])]) as tf.Tensor2D
  const inputs = rowsOf(padded(flat), slots).reshape([b, k, d]) as tf.Tensor3D
  const key = `blocks.${i}`
  const at = ctx.cache?.held.get(key) ?? 0
  const change = tf.sub(ctx.run(i, inputs, undefined, undefined, at), inputs).reshape([b * k, d]) as tf.Tensor2D
  const scaled = tf.mul(change, rowsOf(padded(gate), slots)) as tf.Tensor2D
  const real = slots.flatMap((s, j) => (s < n ? [j] : []))
  ctx.cache?.held.set(key, at + k)
  // Padding is computed too, so it is spent, though no token ran the block there.
  ctx.trace?.block(i, real.length, ctx.costs.blocks[i]!.full)
  ctx.trace?.spend((slots.length - real.length) * ctx.costs.blocks[i]!.full)
  return tf.add(x, placeRows(rowsOf(scaled, real), real.map((j) => slots[j]!), n).reshape([b, t, d])) as tf.Tensor3D
}

/**
 * What inference spends on n positions of one sequence, given the positions routed through
 * each block (routed[i], for routed blocks), as forward counts it: the native decoder's count.
 */
export const traceRouting = (policy: MixtureOfDepths, spec: DecoderSpec, costs: DepthCosts, routed: ArrayLike<number>, n: number, trace: DepthTrace): void => {
  trace.enter(n, costs.base + costs.head)
  costs.blocks.forEach((cost, i) => {
    if (!isRouted(policy, i)) return trace.block(i, n, cost.full)
    trace.spend(n * routingFlops(policy, dimsOf(spec)))
    if (routed[i]! > 0) trace.block(i, routed[i]!, cost.full)
  })
}

const forward: DepthCompute<MixtureOfDepths>["forward"] = (policy, x0, ctx) => {
  const [b, t] = x0.shape
  const { costs, trace } = ctx
  trace?.enter(b * t, costs.base + costs.head)
  const aux: tf.Scalar[] = []
  let x = x0
  costs.blocks.forEach((cost, i) => {
    if (isRouted(policy, i)) {
      x = routed(policy, ctx, i, x, aux)
      return
    }
    x = ctx.run(i, x)
    trace?.block(i, b * t, cost.full)
  })
  const logits = ctx.lmHead(ctx.finalNorm(x)).reshape([b, t, ctx.spec.vocab]) as tf.Tensor3D
  if (aux.length === 0) return { logits }
  return { logits, objective: { outputs: [{ logits, weight: 1 }], aux: tf.div(tf.addN(aux), aux.length) as tf.Scalar } }
}

export const mixtureOfDepths: DepthCompute<MixtureOfDepths> = {
  // Inference routes as many positions as the predictor says, another count every batch.
  forward: (policy, x0, ctx) => (ctx.training ? forward(policy, x0, ctx) : withVaryingRows(() => forward(policy, x0, ctx))),
}
