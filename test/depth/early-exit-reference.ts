import * as tf from "@tensorflow/tfjs"
import type { EarlyExit } from "../../dsl/kinds/depth/early-exit.js"
import type { DepthContext, DepthOutput } from "../../src/depth/compute.js"
import { assemble, rowsOf, withRows } from "../../src/depth/rows.js"
import { earlyExit } from "../../src/depth/early-exit.js"
import { vi } from "vitest"

/**
 * Early exit's inference as first written, kept as the naive reference: every position runs
 * every block's layers through the last attention (until no position of the batch runs), the
 * running ones the rest, and every running row is gathered afresh at each step.
 */
const exitHead = (policy: EarlyExit, ctx: DepthContext, i: number, normed: tf.Tensor2D): tf.Tensor2D =>
  policy.heads === "per-block" && i < ctx.costs.blocks.length - 1 ? ctx.capLogits(tf.matMul(normed, ctx.param(i, "exit.weight") as tf.Tensor2D)) : ctx.lmHead(normed)

const softmaxMargin = (logits: tf.Tensor2D): Float32Array =>
  tf.tidy(() => {
    const probs = tf.softmax(logits)
    const first = tf.max(probs, 1)
    const second = tf.max(tf.sub(probs, tf.mul(tf.oneHot(tf.argMax(probs, 1), logits.shape[1]), 2)), 1)
    return tf.sub(first, second).dataSync() as Float32Array
  })

const cosine = (a: tf.Tensor2D, b: tf.Tensor2D): Float32Array =>
  tf.tidy(() => {
    const dot = tf.sum(tf.mul(a, b), 1)
    const norms = tf.sqrt(tf.mul(tf.sum(tf.square(a), 1), tf.sum(tf.square(b), 1)))
    return tf.clipByValue(tf.div(dot, norms), -1, 1).dataSync() as Float32Array
  })

export const naiveInfer = (policy: EarlyExit, x0: tf.Tensor3D, ctx: DepthContext): DepthOutput => {
  const [b, t, d] = x0.shape
  const n = b * t
  const last = ctx.costs.blocks.length - 1
  const { costs, trace } = ctx
  trace?.enter(n, costs.base)
  const forced = (r: number): number | undefined => trace?.replay.exits?.[Math.floor(r / t)]?.[ctx.offset + (r % t)]
  const exitAt = new Array<number>(n).fill(last)
  const chunks: Array<{ rows: number[]; values: tf.Tensor2D }> = []
  let running = Array.from({ length: n }, (_, r) => r)
  let h = x0
  for (let i = 0; i <= last; i++) {
    const cost = costs.blocks[i]!
    if (running.length === 0) {
      if (ctx.cache === undefined) break
      ctx.run(i, h, 0, cost.prefixLayers)
      trace?.spend(n * cost.prefix)
      continue
    }
    const all = running.length === n
    const before = h
    if (all) {
      h = ctx.run(i, h)
      trace?.block(i, n, cost.full)
    } else {
      const mid = ctx.run(i, h, 0, cost.prefixLayers)
      const rest = ctx.run(i, rowsOf(mid.reshape([n, d]), running).reshape([1, running.length, d]) as tf.Tensor3D, cost.prefixLayers)
      h = withRows(h.reshape([n, d]), running, rest.reshape([running.length, d]) as tf.Tensor2D).reshape([b, t, d]) as tf.Tensor3D
      trace?.spend((n - running.length) * cost.prefix)
      trace?.block(i, running.length, cost.full)
    }
    const current = all ? h : (rowsOf(h.reshape([n, d]), running).reshape([1, running.length, d]) as tf.Tensor3D)
    const normed = ctx.finalNorm(current)
    if (i === last) {
      chunks.push({ rows: running, values: ctx.lmHead(normed) })
      trace?.spend(running.length * costs.head)
      break
    }
    let logits: tf.Tensor2D | undefined
    let confidence: Float32Array
    if (policy.measure === "softmax") {
      logits = exitHead(policy, ctx, i, normed)
      trace?.spend(running.length * costs.head)
      confidence = softmaxMargin(logits)
    } else {
      const rows = (x: tf.Tensor3D) => (all ? x.reshape([n, d]) : rowsOf(x.reshape([n, d]), running)) as tf.Tensor2D
      confidence = cosine(rows(h), rows(before))
    }
    const leaving = running.flatMap((r, k) => ((forced(r) ?? (confidence[k]! > policy.threshold ? i : -1)) === i ? [k] : []))
    if (leaving.length === 0) continue
    const rows = leaving.map((k) => running[k]!)
    const values = logits ? rowsOf(logits, leaving) : exitHead(policy, ctx, i, rowsOf(normed, leaving))
    if (!logits) trace?.spend(rows.length * costs.head)
    chunks.push({ rows, values })
    for (const r of rows) exitAt[r] = i
    const left = new Set(rows)
    running = running.filter((r) => !left.has(r))
  }
  if (trace) for (let row = 0; row < b; row++) (trace.exits[row] ??= []).push(...exitAt.slice(row * t, row * t + t))
  const only = chunks.length === 1 && chunks[0]!.rows.length === n
  const logits = only ? chunks[0]!.values : assemble(chunks, n)
  return { logits: logits.reshape([b, t, ctx.spec.vocab]) as tf.Tensor3D }
}

/** f computed with the naive reference in place of the policy's inference, through the same hooks. */
export const withReference = <T>(f: () => T): T => {
  const spy = vi.spyOn(earlyExit, "forward").mockImplementation((policy, x, ctx) => naiveInfer(policy, x, ctx))
  try {
    return f()
  } finally {
    spy.mockRestore()
  }
}
