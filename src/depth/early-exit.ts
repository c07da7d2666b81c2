import * as tf from "@tensorflow/tfjs"
import type { DepthCosts } from "../../dsl/costs.js"
import type { EarlyExit } from "../../dsl/kinds/depth/early-exit.js"
import { fusedRowCosine, fusedSoftmaxMargin } from "../backend/fused.js"
import { withVaryingRows } from "../backend/varying-rows.js"
import type { DepthCompute, DepthContext, DepthOutput } from "./compute.js"
import { assemble, rowsOf, withRows } from "./rows.js"
import type { DepthTrace } from "./trace.js"

/**
 * Early exit. Training runs every block on every position and weighs each block's exit
 * (ω_i ∝ i). Inference runs block by block: the positions still running go through the whole
 * block; positions that have left keep the hidden state they left with, and each later block
 * still runs its layers through the last attention on that state (CALM's state propagation),
 * so later positions find their keys and values, in the same pass or in the decoding cache
 * (without a cache, only as far as some later position of the sequence still runs: see
 * `spanOf`). Without a cache, where the block's attention allows it (dsl/costs.ts
 * keyValueSplit: full attention), they compute only those keys and values: queries, scores,
 * output projection and the rest of the block run for the running positions alone
 * (`ctx.runRows`). With a cache they run the whole prefix, as the native decoder does.
 * Confidence is computed for the running positions only, after every block but the last.
 * With the saturation measure and the shared head, no logits are needed before the end: the
 * LM head runs once, over every position's final hidden state, as in the plain decoder
 * (per-exit chunks of logits would cost a gather and a concatenation over [B·T, V]).
 */
const exitHead = (policy: EarlyExit, ctx: DepthContext, i: number, normed: tf.Tensor2D): tf.Tensor2D =>
  policy.heads === "per-block" && i < ctx.costs.blocks.length - 1 ? ctx.capLogits(tf.matMul(normed, ctx.param(i, "exit.weight") as tf.Tensor2D)) : ctx.lmHead(normed)

const train = (policy: EarlyExit, x0: tf.Tensor3D, ctx: DepthContext): DepthOutput => {
  const [b, t] = x0.shape
  const { costs, trace } = ctx
  trace?.enter(b * t, costs.base)
  let x = x0
  const outputs = costs.blocks.map((cost, i) => {
    x = ctx.run(i, x)
    trace?.block(i, b * t, cost.full)
    trace?.spend(b * t * costs.head)
    return { logits: exitHead(policy, ctx, i, ctx.finalNorm(x)).reshape([b, t, ctx.spec.vocab]) as tf.Tensor3D, weight: i + 1 }
  })
  return { logits: outputs[outputs.length - 1]!.logits, objective: { outputs } }
}

/**
 * Top-1 minus top-2 probability of each row's softmax: the backend's fused kernel (native
 * reduce.cc softmax_margins, which the native decoder's program shares) where it has one;
 * otherwise the softmax, then one pass over its rows for the two largest (equal ones both
 * count, so a tie gives 0), instead of the tensor ops that push the top entry below zero, each
 * another pass over [rows, V]. The difference is stored as float32, which rounds the double
 * difference of two float32s as float32's own subtraction would, so both ways decide alike.
 */
const softmaxMargin = (logits: tf.Tensor2D): Float32Array => {
  const fused = fusedSoftmaxMargin(logits)
  if (fused) {
    const margin = fused.dataSync() as Float32Array
    fused.dispose()
    return margin
  }
  const v = logits.shape[1]
  const probs = tf.softmax(logits)
  const p = probs.dataSync() as Float32Array
  const margin = new Float32Array(logits.shape[0])
  for (let r = 0; r < margin.length; r++) {
    let first = -Infinity
    let second = -Infinity
    for (let c = r * v; c < (r + 1) * v; c++) {
      const x = p[c]!
      if (x > first) {
        second = first
        first = x
      } else if (x > second) second = x
    }
    margin[r] = first - second
  }
  probs.dispose()
  return margin
}

/**
 * Cosine between each row of a and of b, clamped to [-1, 1] (rounding may leave it a hair
 * outside): one pass by the backend's fused kernel where it has one, else ten tensor ops.
 * Read outside tf.tidy: a tidy walks every element of an array it returns, looking for tensors.
 */
const cosine = (a: tf.Tensor2D, b: tf.Tensor2D): Float32Array => {
  const c =
    fusedRowCosine(a, b) ??
    tf.tidy(() => {
      const dot = tf.sum(tf.mul(a, b), 1)
      const norms = tf.sqrt(tf.mul(tf.sum(tf.square(a), 1), tf.sum(tf.square(b), 1)))
      return tf.clipByValue(tf.div(dot, norms), -1, 1)
    })
  const values = c.dataSync() as Float32Array
  c.dispose()
  return values
}

/**
 * What inference spent on b rows of t positions, given the block each position left after
 * (row-major): every block in full for the positions still running, its prefix for those that
 * left (the cache needs their keys and values; the native program, like \`infer\` with a
 * cache, runs the prefix on every row), and the heads the measure applied; the exits are
 * appended to the trace's, per row: what \`infer\` counts with a decoding cache, for the
 * native decoder's calls, which report only the exits.
 */
export const traceExits = (policy: EarlyExit, costs: DepthCosts, exitAt: ArrayLike<number>, b: number, t: number, trace: DepthTrace): void => {
  const n = b * t
  const last = costs.blocks.length - 1
  trace.enter(n, costs.base)
  for (let i = 0; i <= last; i++) {
    const cost = costs.blocks[i]!
    let running = 0
    let leaving = 0
    for (let r = 0; r < n; r++) {
      if (exitAt[r]! >= i) running++
      if (exitAt[r] === i) leaving++
    }
    if (running === 0) {
      trace.spend(n * cost.prefix)
      continue
    }
    trace.spend((n - running) * cost.prefix)
    trace.block(i, running, cost.full)
    // Softmax applies the exit head to every running position; otherwise only the leaving ones get logits.
    trace.spend((i === last || policy.measure === "softmax" ? running : leaving) * costs.head)
  }
  for (let row = 0; row < b; row++) {
    const exits = (trace.exits[row] ??= [])
    for (let p = 0; p < t; p++) exits.push(exitAt[row * t + p]!)
  }
}

/**
 * The positions whose keys and values a block computes while some positions still run it:
 * with a cache, every position (later steps read them); without one, in a causal model,
 * only the sequences that still have a running position, up to their last one, since no
 * other position of this pass reads the keys and values after it. `sequences` ascending.
 */
interface Span {
  readonly sequences: ReadonlyArray<number>
  readonly length: number
}

const spanOf = (running: ReadonlyArray<number>, b: number, t: number, whole: boolean): Span => {
  if (whole) return { sequences: Array.from({ length: b }, (_, s) => s), length: t }
  // `running` is ascending, so each sequence's last entry is its last running position.
  const lastOf = new Map<number, number>()
  for (const r of running) lastOf.set(Math.floor(r / t), r % t)
  return { sequences: [...lastOf.keys()], length: Math.max(0, ...[...lastOf.values()].map((p) => p + 1)) }
}

/** The span's positions of h [B, T, D]: [sequences, length, D]. */
const spanInput = (h: tf.Tensor3D, span: Span): tf.Tensor3D => {
  const [b, t, d] = h.shape
  const s = span.sequences.length
  const picked = s === b ? h : (rowsOf(h.reshape([b, t * d]), span.sequences).reshape([s, t, d]) as tf.Tensor3D)
  return span.length === t ? picked : tf.slice(picked, [0, 0, 0], [s, span.length, d])
}

const infer = (policy: EarlyExit, x0: tf.Tensor3D, ctx: DepthContext): DepthOutput => {
  const [b, t, d] = x0.shape
  const n = b * t
  const last = ctx.costs.blocks.length - 1
  const { costs, trace } = ctx
  trace?.enter(n, costs.base)
  const forced = (r: number): number | undefined => trace?.replay.exits?.[Math.floor(r / t)]?.[ctx.offset + (r % t)]
  const whole = ctx.cache !== undefined || ctx.spec.allowNonCausal === true
  const exitAt = new Array<number>(n).fill(last)
  // The LM head over the hidden states the positions leave with, once at the end (see above).
  const once = policy.measure === "saturation" && policy.heads === "shared"
  const chunks: Array<{ rows: number[]; values: tf.Tensor2D }> = []
  let running = Array.from({ length: n }, (_, r) => r)
  // Every position's hidden state (those that left keep the one they left with), and the running ones' in `running` order.
  let h = x0
  let current = x0.reshape([n, d]) as tf.Tensor2D
  const final = (rows: tf.Tensor2D) => ctx.finalNorm(rows.reshape([1, rows.shape[0], d]) as tf.Tensor3D)
  for (let i = 0; i <= last; i++) {
    const cost = costs.blocks[i]!
    const span = spanOf(running, b, t, whole)
    const s = span.sequences.length
    // Without a cache, keys and values that no running position reads are never needed.
    if (s * span.length === 0 || (running.length === 0 && ctx.cache === undefined)) break
    const input = spanInput(h, span)
    const before = current
    if (running.length === s * span.length) {
      // Every position of the span runs (so the span is exactly the running positions, in order): the whole block at once.
      current = ctx.run(i, input).reshape([running.length, d]) as tf.Tensor2D
      trace?.block(i, running.length, cost.full)
    } else {
      const slot = new Map(span.sequences.map((seq, k) => [seq, k]))
      const inSpan = running.map((r) => slot.get(Math.floor(r / t))! * span.length + (r % t))
      if (cost.keyValues !== undefined && ctx.cache === undefined) {
        // The positions that left compute only the keys and values the running ones read (and their scores, where a kernel over every row is cheaper).
        const out = ctx.runRows(i, input, inSpan)
        current = out.y
        trace?.spend((s * span.length - running.length) * (out.all ? cost.attendedKeyValues! : cost.keyValues))
      } else {
        const mid = ctx.run(i, input, 0, cost.prefixLayers)
        trace?.spend((s * span.length - running.length) * cost.prefix)
        if (running.length === 0) continue
        const rest = ctx.run(i, rowsOf(mid.reshape([s * span.length, d]), inSpan).reshape([1, running.length, d]) as tf.Tensor3D, cost.prefixLayers)
        current = rest.reshape([running.length, d]) as tf.Tensor2D
      }
      trace?.block(i, running.length, cost.full)
    }
    if (i === last && !once) {
      chunks.push({ rows: running, values: ctx.lmHead(final(current)) })
      trace?.spend(running.length * costs.head)
      break
    }
    h = running.length === n ? (current.reshape([b, t, d]) as tf.Tensor3D) : (withRows(h.reshape([n, d]), running, current).reshape([b, t, d]) as tf.Tensor3D)
    if (i === last) break
    let logits: tf.Tensor2D | undefined
    let confidence: Float32Array
    if (policy.measure === "softmax") {
      logits = exitHead(policy, ctx, i, final(current))
      trace?.spend(running.length * costs.head)
      confidence = softmaxMargin(logits)
    } else {
      confidence = cosine(current, before)
    }
    const leaving = running.flatMap((r, k) => ((forced(r) ?? (confidence[k]! > policy.threshold ? i : -1)) === i ? [k] : []))
    const rows = leaving.map((k) => running[k]!)
    if (logits) {
      if (leaving.length > 0) chunks.push({ rows, values: rowsOf(logits, leaving) })
      // Freed now rather than when the pass ends: the next block's [rows, V] reuses the buffer.
      logits.dispose()
    }
    if (leaving.length === 0) continue
    if (!logits && !once) {
      chunks.push({ rows, values: exitHead(policy, ctx, i, final(rowsOf(current, leaving))) })
      trace?.spend(rows.length * costs.head)
    }
    for (const r of rows) exitAt[r] = i
    const left = new Set(leaving)
    const staying = running.flatMap((_, k) => (left.has(k) ? [] : [k]))
    running = staying.map((k) => running[k]!)
    // Only the saturation measure compares a running position's state before and after a block.
    if (policy.measure === "saturation" && running.length > 0) current = rowsOf(current, staying)
  }
  if (trace) for (let row = 0; row < b; row++) (trace.exits[row] ??= []).push(...exitAt.slice(row * t, row * t + t))
  if (once) {
    // The head each position gets when it leaves (after the last block, or before it).
    trace?.spend(n * costs.head)
    return { logits: ctx.lmHead(ctx.finalNorm(h)).reshape([b, t, ctx.spec.vocab]) as tf.Tensor3D }
  }
  const only = chunks.length === 1 && chunks[0]!.rows.length === n
  const logits = only ? chunks[0]!.values : assemble(chunks, n)
  return { logits: logits.reshape([b, t, ctx.spec.vocab]) as tf.Tensor3D }
}

export const earlyExit: DepthCompute<EarlyExit> = {
  // Inference gathers another number of running rows at every block.
  forward: (policy, x, ctx) => (ctx.training ? train(policy, x, ctx) : withVaryingRows(() => infer(policy, x, ctx))),
}
