import * as tf from "@tensorflow/tfjs"
import { afterEach, beforeEach, expect, it, vi } from "vitest"
import { attention, gpt2, posenc, replace } from "../../dsl/index.js"
import type { DecoderSpec } from "../../dsl/nodes.js"
import { fusedAttention } from "../../src/backend/fused.js"
import type { NativeBackend } from "../../src/backend/native/index.js"
import { compile } from "../../src/model/index.js"
import type { PositionHooks } from "../../src/model/kind.js"
import { AdamW } from "../../src/optimizer/adamw.js"
import { alibi } from "../../src/posenc/alibi.js"
import { rope } from "../../src/posenc/rope.js"
import { xpos } from "../../src/posenc/xpos.js"
import { Rng } from "../../src/random/rng.js"
import { describeNative } from "../backend/native-suite.js"
import { centralDifferenceErrors } from "./helpers.js"

type Shape = readonly [b: number, h: number, t: number, dh: number]

/** A covered pattern: how far back a query sees (absent: dense) and whether ALiBi's bias applies. */
interface Pattern {
  readonly name: string
  readonly span?: number
  readonly alibi: boolean
}

const patterns: readonly Pattern[] = [
  { name: "dense", alibi: false },
  { name: "dense + ALiBi", alibi: true },
  { name: "window 7", span: 7, alibi: false },
  { name: "window 40 + ALiBi", span: 40, alibi: true },
]

// ALiBi's own hooks: the composed path's bias, and the slopes the fused kernel gets.
const alibiHooks: PositionHooks = alibi.hooks!(() => tf.scalar(0), { op: "posenc", kind: "alibi" }, { vocab: 2, width: 8, context: 8, layers: 1 })

const visible = (i: number, j: number, span: number | undefined): boolean => j <= i && (span === undefined || i - j <= span)

/** The composed ops as src/attention/full.ts computes them: scores, additive mask, ALiBi's scoreBias, softmax, weighted sum. */
const composed = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, p: Pattern): tf.Tensor4D =>
  tf.tidy(() => {
    const [, h, t] = q.shape
    const mask = new Float32Array(t * t)
    for (let i = 0; i < t; i++) for (let j = 0; j < t; j++) if (!visible(i, j, p.span)) mask[i * t + j] = -1e9
    let scores = tf.add(tf.matMul(q, k, false, true), tf.tensor2d(mask, [t, t]))
    if (p.alibi) scores = tf.add(scores, alibiHooks.scoreBias!(h, t, t, 0, 0))
    return tf.matMul(tf.softmax(scores), v) as tf.Tensor4D
  })

const fused = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, p: Pattern): tf.Tensor4D =>
  fusedAttention(q, k, v, { span: p.span, slopes: p.alibi ? alibiHooks.distanceSlopes!(q.shape[1]) : undefined })!

const inputs = (shape: Shape, seed: number): [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D] =>
  [0, 1, 2].map((i) => tf.randomNormal([...shape], 0, 1, "float32", seed * 10 + i) as tf.Tensor4D) as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D]

/** Max |a − b| over max |b|. */
const relDiff = (a: tf.Tensor, b: tf.Tensor): number => tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]! / tf.max(tf.abs(b)).dataSync()[0]!)

/** Gradients of Σ out·w for q, k, v (w random, so every output row has its own upstream gradient). */
const gradsOf = (attend: (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D) => tf.Tensor4D, qkv: tf.Tensor4D[], w: tf.Tensor): tf.Tensor[] =>
  tf.grads((q: tf.Tensor, k: tf.Tensor, v: tf.Tensor) => tf.sum(tf.mul(attend(q as tf.Tensor4D, k as tf.Tensor4D, v as tf.Tensor4D), w)))(qkv)

/** Naive attention in float64: Σ out·w for the values as given. */
const naiveLoss = (q: Float64Array, k: Float64Array, v: Float64Array, w: Float64Array, [b, h, t, dh]: Shape, p: Pattern): number => {
  const slopes = p.alibi ? alibiHooks.distanceSlopes!(h) : undefined
  let loss = 0
  for (let bh = 0; bh < b * h; bh++) {
    const o = bh * t * dh
    for (let i = 0; i < t; i++) {
      const scores: number[] = []
      for (let j = 0; j <= i; j++) {
        if (!visible(i, j, p.span)) continue
        let s = 0
        for (let d = 0; d < dh; d++) s += q[o + i * dh + d]! * k[o + j * dh + d]!
        scores.push(s + (slopes ? slopes[bh % h]! * (i - j) : 0))
      }
      const m = Math.max(...scores)
      const first = i + 1 - scores.length
      const e = scores.map((s) => Math.exp(s - m))
      const z = e.reduce((a, c) => a + c, 0)
      for (let d = 0; d < dh; d++) {
        let out = 0
        e.forEach((x, c) => (out += (x / z) * v[o + (first + c) * dh + d]!))
        loss += out * w[o + i * dh + d]!
      }
    }
  }
  return loss
}

describeNative("fused causal attention on the native backend", () => {
  beforeEach(() => {
    process.env["TFJS_NATIVE_FUSED_ATTENTION"] = "1"
  })
  afterEach(() => {
    delete process.env["TFJS_NATIVE_FUSED_ATTENTION"]
  })

  // Head sizes off and on whole register tiles (16), and sequences of one block to several (96 positions
  // each), so that windows start past the first block of keys.
  const shapes: readonly Shape[] = [
    [1, 1, 5, 3],
    [2, 3, 37, 24],
    [3, 4, 70, 24],
    [1, 2, 130, 16],
    [1, 2, 300, 32],
    // One head: its key blocks split among threads, each summing its own dQ.
    [1, 1, 300, 32],
  ]
  const cases = patterns.flatMap((p) => shapes.map((s) => [p.name, s.join("×"), p, s] as const))

  it.each(cases)("%s, [%s]: output and q, k, v gradients equal the composed ops' within float32 rounding", async (_name, _label, p, shape) => {
    await tf.setBackend("native")
    const before = tf.memory().numTensors
    const qkv = inputs(shape, shape[2])
    const w = tf.randomNormal([...shape], 0, 1, "float32", 7)
    const [want, got] = [composed(...qkv, p), fused(...qkv, p)]
    // Sums in another order and another exp: measured at most 2e-6 of the largest value.
    expect(relDiff(got, want)).toBeLessThan(1e-5)
    const wantGrads = gradsOf((q, k, v) => composed(q, k, v, p), qkv, w)
    const gotGrads = gradsOf((q, k, v) => fused(q, k, v, p), qkv, w)
    gotGrads.forEach((g, i) => expect(relDiff(g, wantGrads[i]!), "qkv"[i]).toBeLessThan(1e-5))
    tf.dispose([...qkv, w, want, got, ...wantGrads, ...gotGrads])
    expect(tf.memory().numTensors).toBe(before)
  })

  it("scores hundreds apart, whose exp flushes to 0 in the kernel: output and gradients still equal the composed ops'", async () => {
    await tf.setBackend("native")
    const shape: Shape = [1, 2, 130, 16]
    const [q0, k, v] = inputs(shape, 11)
    // q·k of unit normals over 16 dims has deviation 4: times 30, a row's scores spread over hundreds.
    const q = tf.mul(q0, 30) as tf.Tensor4D
    const w = tf.randomNormal([...shape], 0, 1, "float32", 12)
    const p = patterns[1]!
    const [want, got] = [composed(q, k, v, p), fused(q, k, v, p)]
    expect(relDiff(got, want)).toBeLessThan(1e-5)
    const wantGrads = gradsOf((a, b, c) => composed(a, b, c, p), [q, k, v], w)
    const gotGrads = gradsOf((a, b, c) => fused(a, b, c, p), [q, k, v], w)
    gotGrads.forEach((g, i) => expect(relDiff(g, wantGrads[i]!), "qkv"[i]).toBeLessThan(1e-5))
    tf.dispose([q0, q, k, v, w, want, got, ...wantGrads, ...gotGrads])
  })

  it.each(patterns.map((p) => [p.name, p] as const))("%s: the kernel's gradient equals float64 central differences of naive attention", async (_name, p) => {
    await tf.setBackend("native")
    const shape: Shape = [2, 2, 11, 3]
    const tiny = { ...p, span: p.span === undefined ? undefined : 3 }
    const qkv = inputs(shape, 5)
    const w = tf.randomNormal([...shape], 0, 1, "float32", 8)
    const grads = gradsOf((q, k, v) => fused(q, k, v, tiny), qkv, w)
    const values = qkv.map((x) => Float64Array.from(x.dataSync()))
    const wv = Float64Array.from(w.dataSync())
    const errors = centralDifferenceErrors(values, grads.map((g) => g.dataSync()), () => naiveLoss(values[0]!, values[1]!, values[2]!, wv, shape, tiny))
    errors.forEach((e, which) => expect(e, "qkv"[which]).toBeLessThan(1e-5))
    tf.dispose([...qkv, w, ...grads])
  })

  it("training keeps q, k, v, out and the log-sum-exp rather than the B·H·T·T probabilities", async () => {
    await tf.setBackend("native")
    const shape: Shape = [1, 2, 512, 8]
    const qkv = inputs(shape, 3)
    const w = tf.randomNormal([...shape], 0, 1, "float32", 9)
    const probabilities = shape[0] * shape[1] * shape[2] * shape[2] * 4
    const peak = async (attend: (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D) => tf.Tensor4D) => {
      const before = tf.memory().numBytes
      const info = await tf.profile(() => tf.dispose(gradsOf(attend, qkv, w)))
      return info.peakBytes - before
    }
    expect(await peak((q, k, v) => composed(q, k, v, patterns[0]!))).toBeGreaterThan(probabilities)
    expect(await peak((q, k, v) => fused(q, k, v, patterns[0]!))).toBeLessThan(probabilities / 4)
    tf.dispose([...qkv, w])
  })

  const batchOf = (rng: Rng, vocab: number, b: number, t: number) => {
    const tokens = new Int32Array(b * (t + 1))
    for (let e = 0; e < tokens.length; e++) tokens[e] = rng.nextInt(vocab)
    return { tokens: tf.tensor2d(tokens, [b, t + 1], "int32"), mask: tf.ones([b, t]) as tf.Tensor2D }
  }

  /** Losses of a few seeded AdamW steps. */
  const train = (spec: DecoderSpec, steps: number) => {
    const model = compile(spec)
    const params = model.init(5) as Record<string, tf.Variable>
    const paramOf = new Map(Object.entries(params).map(([name, v]) => [v.name, name]))
    const opt = new AdamW(params, { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, decay: () => true })
    const rng = Rng.derive(6, "data")
    const losses: number[] = []
    for (let s = 0; s < steps; s++) {
      const batch = batchOf(rng, spec.vocab, 2, spec.context)
      const { value, grads } = tf.variableGrads(() => model.loss(params, batch, { training: true }))
      losses.push(value.dataSync()[0]!)
      opt.update(Object.fromEntries(Object.entries(grads).map(([v, g]) => [paramOf.get(v) ?? v, g])), 3e-3)
      tf.dispose([value, batch.tokens, batch.mask, ...Object.values(grads)])
    }
    opt.dispose()
    tf.dispose(Object.values(params))
    return losses
  }

  const base = gpt2({ vocab: 61, width: 24, context: 20, layers: 2, heads: 2, activation: "relu" })
  const models: ReadonlyArray<readonly [string, DecoderSpec]> = [
    ["full, learned positions", base],
    ["full, ALiBi", replace(base, { posenc: () => posenc("alibi") })],
    ["sliding window, ALiBi", replace(base, { attention: () => attention("sliding-window", { heads: 3, headDim: 8, window: 6 }), posenc: () => posenc("alibi") })],
    ["full, RoPE rotated in the kernel", replace(base, { posenc: () => posenc("rope") })],
    ["sliding window, xPos rotated in the kernel", replace(base, { attention: () => attention("sliding-window", { heads: 3, headDim: 8, window: 6 }), posenc: () => posenc("xpos") })],
  ]
  it.each(models)("a short training run of a tiny model (%s) follows the composed path's losses", async (_name, spec) => {
    await tf.setBackend("native")
    const before = tf.memory().numTensors
    const kernel = vi.spyOn((tf.backend() as NativeBackend).addon, "attention")
    process.env["TFJS_NATIVE_FUSED_ATTENTION"] = "0"
    const off = train(spec, 4)
    expect(kernel).not.toHaveBeenCalled()
    process.env["TFJS_NATIVE_FUSED_ATTENTION"] = "1"
    const on = train(spec, 4)
    // Once per layer and step.
    expect(kernel).toHaveBeenCalledTimes(2 * 4)
    kernel.mockRestore()
    on.forEach((l, s) => expect(Math.abs(l - off[s]!), `step ${s}`).toBeLessThan(1e-5 * off[s]!))
    expect(on[3]).not.toBe(on[0])
    expect(tf.memory().numTensors).toBe(before)
  })

  // RoPE on part of each head (pairs (j, j + 2) of dims 0–3, dims 4–5 pass) and xPos on all of it, with its separate query and key scales.
  const dims = { vocab: 2, width: 12, context: 8, layers: 1 }
  const rotations: ReadonlyArray<readonly [string, PositionHooks]> = [
    ["RoPE on 4 of 6 dims", rope.hooks!(() => tf.scalar(0), { op: "posenc", kind: "rope", base: 100, dims: 4 }, dims)],
    ["xPos", xpos.hooks!(() => tf.scalar(0), { op: "posenc", kind: "xpos", base: 100, scaleBase: 8 }, dims)],
  ]
  const rotatedCases = rotations.flatMap(([name, hooks]) => [patterns[0]!, patterns[3]!].map((p) => [name, p.name, hooks, p] as const))
  const fusedRotated = (hooks: PositionHooks, p: Pattern) => (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D) =>
    fusedAttention(q, k, v, { span: p.span, slopes: p.alibi ? alibiHooks.distanceSlopes!(q.shape[1]) : undefined, rotation: hooks.rotation!(q.shape[2], q.shape[3], 0) })!
  const composedRotated = (hooks: PositionHooks, p: Pattern) => (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D) =>
    tf.tidy(() => composed(...hooks.queryKey!(q, k, 0, 0), v, p))

  it.each(rotatedCases)("%s rotated in the kernel, %s: output and q, k, v gradients equal the composed rotation and ops' within float32 rounding", async (_name, _p, hooks, p) => {
    await tf.setBackend("native")
    const before = tf.memory().numTensors
    const shape: Shape = [2, 3, 70, 6]
    const qkv = inputs(shape, 3)
    const w = tf.randomNormal([...shape], 0, 1, "float32", 4)
    const [want, got] = [composedRotated(hooks, p)(...qkv), fusedRotated(hooks, p)(...qkv)]
    expect(relDiff(got, want)).toBeLessThan(1e-5)
    const wantGrads = gradsOf(composedRotated(hooks, p), qkv, w)
    const gotGrads = gradsOf(fusedRotated(hooks, p), qkv, w)
    gotGrads.forEach((g, i) => expect(relDiff(g, wantGrads[i]!), "qkv"[i]).toBeLessThan(1e-5))
    tf.dispose([...qkv, w, want, got, ...wantGrads, ...gotGrads])
    expect(tf.memory().numTensors).toBe(before)
  })

  it.each(rotations)("%s rotated in the kernel: its gradient equals float64 central differences of naive rotation and attention", async (_name, hooks) => {
    await tf.setBackend("native")
    const shape: Shape = [1, 2, 9, 6]
    const [, , t, dh] = shape
    const p: Pattern = { name: "window 3 + ALiBi", span: 3, alibi: true }
    const { half, tables } = hooks.rotation!(t, dh, 0)
    const table = (which: number) => Float64Array.from(tables.subarray(which * t * dh, (which + 1) * t * dh))
    const [qcos, qsin, kcos, ksin] = [0, 1, 2, 3].map(table) as [Float64Array, Float64Array, Float64Array, Float64Array]
    // x·cos + rotate_half(x)·sin in float64, row by row.
    const rotate = (x: Float64Array, cos: Float64Array, sin: Float64Array): Float64Array =>
      x.map((_, e) => {
        const j = e % dh
        const c = ((Math.floor(e / dh) % t) * dh) + j
        const partner = j < half ? -x[e + half]! : j < 2 * half ? x[e - half]! : 0
        return x[e]! * cos[c]! + partner * sin[c]!
      })
    const loss = (q: Float64Array, k: Float64Array, v: Float64Array, w: Float64Array) => naiveLoss(rotate(q, qcos, qsin), rotate(k, kcos, ksin), v, w, shape, p)
    const qkv = inputs(shape, 6)
    const w = tf.randomNormal([...shape], 0, 1, "float32", 9)
    const grads = gradsOf(fusedRotated(hooks, p), qkv, w)
    const values = qkv.map((x) => Float64Array.from(x.dataSync()))
    const wv = Float64Array.from(w.dataSync())
    const errors = centralDifferenceErrors(values, grads.map((g) => g.dataSync()), () => loss(values[0]!, values[1]!, values[2]!, wv))
    errors.forEach((e, which) => expect(e, "qkv"[which]).toBeLessThan(1e-5))
    tf.dispose([...qkv, w, ...grads])
  })

  it("a model with RoPE or xPos hands the kernel their rotation tables and q, k unrotated", async () => {
    await tf.setBackend("native")
    const kernel = vi.spyOn((tf.backend() as NativeBackend).addon, "attention")
    for (const scheme of ["rope", "xpos"] as const) {
      kernel.mockClear()
      const spec = replace(base, { posenc: () => posenc(scheme) })
      const model = compile(spec)
      const params = model.init(1)
      const batch = batchOf(Rng.fromSeed(2), spec.vocab, 1, spec.context)
      tf.dispose([model.loss(params, batch, { training: true }), batch.tokens, batch.mask, ...Object.values(params)])
      const [half, tables] = kernel.mock.calls[0]![6]!
      expect(half).toBe(6)
      expect(tables.length).toBe(4 * spec.context * 12)
    }
    kernel.mockRestore()
  })

  it("composes the ops where the kernel would change the result: attention dropout in training, T5's bias, ALiBi on a dilated window", async () => {
    await tf.setBackend("native")
    const kernel = vi.spyOn((tf.backend() as NativeBackend).addon, "attention")
    const calls = (spec: DecoderSpec, training: boolean): number => {
      kernel.mockClear()
      const model = compile(spec)
      const params = model.init(1)
      const batch = batchOf(Rng.fromSeed(2), spec.vocab, 1, spec.context)
      tf.dispose([model.loss(params, batch, { training }), batch.tokens, batch.mask, ...Object.values(params)])
      return kernel.mock.calls.length
    }
    const dropout = replace(base, { attention: () => attention("full", { heads: 2, dropout: 0.1 }) })
    expect(calls(dropout, true)).toBe(0)
    // Dropout is the identity outside training, so evaluation fuses.
    expect(calls(dropout, false)).toBe(2)
    expect(calls(replace(base, { posenc: () => posenc("t5", { heads: 2 }) }), true)).toBe(0)
    const dilated = replace(base, { attention: () => attention("sliding-window", { heads: 2, window: 3, dilation: 2 }) })
    expect(calls(replace(dilated, { posenc: () => posenc("alibi") }), true)).toBe(0)
    // Without a bias the dilated window runs in the kernel, its keys reordered by residue (test/attention/fused-parts.test.ts).
    expect(calls(dilated, true)).toBe(2)
    kernel.mockRestore()
  })
})
