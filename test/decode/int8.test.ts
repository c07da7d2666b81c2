import * as tf from "@tensorflow/tfjs"
import { NodeServices } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach, beforeAll, describe, expect, it } from "vitest"
import { attention, block, decoder, depth, earlyExit, ffn, mixtureOfDepths, norm, posenc, type DecoderSpec } from "../../dsl/index.js"
import type { NativeBackend } from "../../src/backend/native/backend.js"
import type { Weights } from "../../src/decode/weights.js"
import { command as evalCommand } from "../../src/cli/eval.js"
import { command as generateCommand } from "../../src/cli/generate.js"
import { evaluate } from "../../src/eval/evaluate.js"
import { generate } from "../../src/eval/generate.js"
import { ProgressSink } from "../../src/io/progress.js"
import { evalBatches } from "../../src/data/batcher.js"
import { compile, DecodeCache, initValues, type Model, type ParamValues } from "../../src/model/index.js"
import { Rng } from "../../src/random/rng.js"
import { type OpenRun, openRun } from "../../src/orchestration/run-dir.js"
import { representative } from "../attention/examples.js"
import { describeNative } from "../backend/native-suite.js"
import { runInProcess } from "../cli/in-process.js"

/**
 * Int8 weights in the native decode program (src/decode/weights.ts): a product, and a whole
 * step, equal a plain-JS computation of the same quantisation (Q8_0: groups of 32 along the
 * input, d = max|v| / 127, q = round(v / d), for weights and activations alike, int32 sums per
 * group scaled by d_w · d_x) up to float32 rounding of the scale products and their sum; they
 * stay near fp32; a trained model's greedy choices mostly agree; early exit, sliding-window,
 * Longformer and Linformer decode with it; the evaluation through the program costs little.
 */
beforeAll(async () => {
  await tf.setBackend("native")
})

afterEach(() => {
  delete process.env["TFJS_NATIVE_DECODE"]
})

const U = 2 ** -24

/** One row's Q8_0 blocks: per group of 32 (the last one shorter) its scale, and the values rounded half away from zero. */
const quantise = (v: ArrayLike<number>): { d: number[]; q: number[][] } => {
  const d: number[] = []
  const q: number[][] = []
  for (let g = 0; g * 32 < v.length; g++) {
    const group = Array.from({ length: Math.min(32, v.length - g * 32) }, (_, c) => v[g * 32 + c]!)
    const scale = Math.fround(Math.max(...group.map(Math.abs)) / 127)
    d.push(scale)
    q.push(group.map((x) => (scale === 0 ? 0 : Math.sign(Math.fround(x / scale)) * Math.round(Math.abs(Math.fround(x / scale))))))
  }
  return { d, q }
}

/** x · w for one row pair of blocks: the exact Σ_g int32(q_x · q_w) · d_x · d_w, and Σ_g d_x · d_w · Σ|q_x · q_w| (what the float32 roundings scale with). */
const q8Dot = (x: ReturnType<typeof quantise>, w: ReturnType<typeof quantise>): { value: number; magnitude: number } => {
  let value = 0
  let magnitude = 0
  x.q.forEach((qx, g) => {
    const scale = x.d[g]! * w.d[g]!
    value += qx.reduce((s, a, c) => s + a * w.q[g]![c]!, 0) * scale
    magnitude += qx.reduce((s, a, c) => s + Math.abs(a * w.q[g]![c]!), 0) * scale
  })
  return { value, magnitude }
}

/** y = x · w (+ b) as int8 computes it, for x [rows, in], w [in, out]; with the float32 rounding bound of each output. */
const q8Linear = (x: Float32Array, rows: number, w: Float32Array, inWidth: number, out: number, b?: Float32Array): { y: Float64Array; bound: Float64Array } => {
  const columns = Array.from({ length: out }, (_, o) => quantise(Array.from({ length: inWidth }, (_, i) => w[i * out + o]!)))
  const groups = Math.ceil(inWidth / 32)
  const y = new Float64Array(rows * out)
  const bound = new Float64Array(rows * out)
  for (let r = 0; r < rows; r++) {
    const xq = quantise(x.subarray(r * inWidth, (r + 1) * inWidth))
    for (let o = 0; o < out; o++) {
      const { value, magnitude } = q8Dot(xq, columns[o]!)
      y[r * out + o] = value + (b?.[o] ?? 0)
      // float32 roundings on the way from exact int32 sums (of partial sums, in lanes or whole):
      // d_w · d_x, its product with the sum, one addition per group, three of the lanes' sum;
      // then the bias.
      bound[r * out + o] = (groups + 5) * U * magnitude + U * Math.abs(y[r * out + o]!)
    }
  }
  return { y, bound }
}

const random = (n: number, seed: number, scale = 1): Float32Array => {
  const rng = Rng.fromSeed(seed)
  return Float32Array.from({ length: n }, () => (rng.nextFloat() * 2 - 1) * scale)
}

/** A program of one linear op, x [rows, in] → y [rows, out], run with the given weights. */
const linearProgram = (x: Float32Array, rows: number, w: Float32Array, b: Float32Array, inWidth: number, out: number, int8: boolean): Float32Array => {
  const addon = (tf.backend() as NativeBackend).addon
  const program = addon.decodeProgram(
    [{ code: 1, x: 0, targets: [{ w: 0, bias: 1, y: 1 }] }],
    [inWidth, out],
    1,
    [
      { values: w, rows: inWidth, cols: out, transpose: true },
      { values: b, rows: 1, cols: out, transpose: false },
    ],
    int8,
  )
  addon.decodeStart(program, x, 1, rows, 0, null)
  const y = new Float32Array(rows * out)
  addon.decodeRegister(program, 1, y, 0)
  return y
}

/** Parameters well above the 0.02 init, so every product matters. */
const bigParams = (m: Model, seed: number, scale = 10): ParamValues => {
  const values = initValues(m.table, seed)
  return Object.fromEntries(m.table.map((p) => [p.name, tf.tensor(values.get(p.name)!.map((v) => v * scale + (v === 0 ? 0.1 : 0)), [...p.decl.shape])]))
}

/** Logits [B, T, V] of the rows decoded natively from an empty cache in chunks of `steps`. */
const decodedLogits = (m: Model, params: ParamValues, rows: number[][], steps: readonly number[], weights: Weights): Float32Array => {
  const cache = new DecodeCache()
  const parts: Float32Array[] = []
  let at = 0
  for (const n of steps) {
    parts.push(tf.tidy(() => m.apply(params, tf.tensor2d(rows.map((r) => r.slice(at, at + n)), [rows.length, n], "int32"), { cache, weights }).dataSync() as Float32Array))
    at += n
  }
  cache.dispose()
  // Rows of chunks back into [B, T, V] order.
  const v = m.spec.vocab
  const total = steps.reduce((a, s) => a + s, 0)
  const out = new Float32Array(rows.length * total * v)
  let t0 = 0
  steps.forEach((n, k) => {
    for (let b = 0; b < rows.length; b++) out.set(parts[k]!.subarray(b * n * v, (b + 1) * n * v), (b * total + t0) * v)
    t0 += n
  })
  return out
}

/** max |a − b| / (1 + max |b|). */
const relative = (a: Float32Array, b: Float32Array): number => {
  let diff = 0
  let top = 0
  a.forEach((x, i) => {
    diff = Math.max(diff, Math.abs(x - b[i]!))
    top = Math.max(top, Math.abs(b[i]!))
  })
  return diff / (1 + top)
}

const ids = (seed: number, n: number, vocab: number) => Array.from({ length: n }, (_, i) => (i * 7 + seed * 3 + ((i * i) % 5)) % vocab)

/** A prompt of 5, single tokens, a chunk of 11 (more than the 8 streamed rows), single tokens. */
const STEPS = [5, 1, 1, 11, 1, 1] as const

/** Int8 logits of a spec against fp32's, on a batch of sequences: their relative difference (both from the native program, from the same parameters). */
const againstFp32 = (spec: DecoderSpec, batch: number): number => {
  const m = compile(spec)
  const params = bigParams(m, 3, 2)
  const total = STEPS.reduce((a, s) => a + s, 0)
  const rows = Array.from({ length: batch }, (_, b) => ids(b + 1, total, spec.vocab))
  try {
    const before = tf.memory().numTensors
    const int8 = decodedLogits(m, params, rows, STEPS, "int8")
    const fp32 = decodedLogits(m, params, rows, STEPS, "fp32")
    expect(tf.memory().numTensors).toBe(before)
    expect(int8.some((v, i) => v !== fp32[i])).toBe(true)
    return relative(int8, fp32)
  } finally {
    tf.dispose(Object.values(params))
  }
}

/**
 * Int8 against fp32 logits, relative to the logits' range (1 + max |fp32|), on parameters 2×
 * the init's. Each product's error is at most half a step of each side's grid (d_w / 2 · Σ|x|
 * + d_x / 2 · Σ|ŵ| per group, asserted exactly for one product below), well under 1% of the
 * product's scale; a few products in series with norms between them measure about 1% here
 * (0.7–0.9%). 3% leaves room for that; a mis-scaled group or a dropped tail misses by far
 * more. Larger parameters make attention nearly hard, where such noise flips which key wins.
 */
const FP32_BOUND = 0.03

describeNative("int8 weights in the native decode program", () => {
  describe("one product against the plain-JS quantisation", () => {
    // 64: whole groups; 70: a tail group of 6. 3 rows are streamed, 12 take the row loop too;
    // 13 outputs split into quarters and a remainder.
    it.each([
      { inWidth: 64, rows: 3 },
      { inWidth: 70, rows: 3 },
      { inWidth: 70, rows: 12 },
      { inWidth: 7, rows: 2 },
    ])("in $inWidth, $rows rows", ({ inWidth, rows }) => {
      const out = 13
      const x = random(rows * inWidth, 1, 3)
      // A zero group in one row: its scale is 0 and it adds nothing.
      x.fill(0, (rows - 1) * inWidth, (rows - 1) * inWidth + Math.min(32, inWidth))
      const w = random(inWidth * out, 2, 0.5)
      const b = random(out, 3)
      const native = linearProgram(x, rows, w, b, inWidth, out, true)
      const { y, bound } = q8Linear(x, rows, w, inWidth, out, b)
      native.forEach((v, i) => expect(Math.abs(v - y[i]!)).toBeLessThanOrEqual(bound[i]!))
      // Against the float product: within half a grid step of each side, and not equal to it.
      const fp32 = linearProgram(x, rows, w, b, inWidth, out, false)
      for (let r = 0; r < rows; r++)
        for (let o = 0; o < out; o++) {
          const xr = Array.from(x.subarray(r * inWidth, (r + 1) * inWidth))
          const wc = Array.from({ length: inWidth }, (_, i) => w[i * out + o]!)
          const xq = quantise(xr)
          const wq = quantise(wc)
          let limit = 0
          for (let g = 0; g < xq.d.length; g++) {
            const span = (v: number[]) => v.slice(g * 32, g * 32 + 32)
            limit += (wq.d[g]! / 2) * span(xr).reduce((s, a) => s + Math.abs(a), 0) + (xq.d[g]! / 2) * wq.q[g]!.reduce((s, a) => s + Math.abs(a * wq.d[g]!), 0)
          }
          expect(Math.abs(native[r * out + o]! - fp32[r * out + o]!)).toBeLessThanOrEqual(limit + 1e-4 * (1 + Math.abs(fp32[r * out + o]!)))
        }
      expect(native.some((v, i) => Math.abs(v - fp32[i]!) > 1e-3)).toBe(true)
    })

    it("refuses a weight that is also read as floats", () => {
      const addon = (tf.backend() as NativeBackend).addon
      const w = { values: new Float32Array(1), rows: 1, cols: 1, transpose: true }
      const ops = [
        { code: 1, x: 0, targets: [{ w: 0, bias: -1, y: 1 }] },
        { code: 0, x: 1, y: 2, gain: 0, bias: -1, eps: 1e-5, center: false },
      ]
      expect(addon.decodeProgram(ops, [1, 1, 1], 2, [w], false)).toBeDefined()
      expect(() => addon.decodeProgram(ops, [1, 1, 1], 2, [w], true)).toThrow(/read as floats is also an int8 product's weight/)
    })
  })

  it("a first step of a model equals the plain-JS int8 computation of it", () => {
    // Width 68 and hidden 40: tail groups of 4 and 8. At position 0 attention returns v.
    const spec = decoder({ vocab: 37, width: 68, context: 8, posenc: posenc("rope"), norm: norm("rms"), tied: false, layers: depth(2, block({ attention: attention("full", { heads: 2 }), ffn: ffn("relu", { hidden: 40 }), norm: norm("rms") })) })
    const m = compile(spec)
    const params = bigParams(m, 4)
    const value = (name: string) => params[name]!.dataSync() as Float32Array
    const rms = (x: Float64Array, gain: Float32Array) => {
      const r = 1 / Math.sqrt(x.reduce((s, a) => s + a * a, 0) / x.length + 1e-6)
      return Float32Array.from(x, (a, j) => a * r * gain[j]!)
    }
    const lin = (x: Float32Array, w: string, b: string | undefined) => {
      const [inWidth, out] = params[w]!.shape as [number, number]
      return q8Linear(x, 1, value(w), inWidth, out, b === undefined ? undefined : value(b)).y
    }
    const token = 5
    let x = Float64Array.from(value("embed.tokens").subarray(token * 68, (token + 1) * 68))
    for (let i = 0; i < 2; i++) {
      const a = `blocks.${i}.0.attention`
      const v = lin(rms(x, value(`blocks.${i}.0.norm.gain`)), `${a}.wv`, `${a}.bv`)
      const o = lin(Float32Array.from(v), `${a}.wo`, `${a}.bo`)
      x = x.map((s, j) => s + o[j]!)
      const f = `blocks.${i}.1.ffn`
      const hidden = lin(rms(x, value(`blocks.${i}.1.norm.gain`)), `${f}.w_in`, `${f}.b_in`).map((s) => Math.max(0, s))
      const out = lin(Float32Array.from(hidden), `${f}.w_out`, `${f}.b_out`)
      x = x.map((s, j) => s + out[j]!)
    }
    const reference = Float32Array.from(lin(rms(x, value("norm.gain")), "head.weight", undefined))
    const native = decodedLogits(m, params, [[token]], [1], "int8")
    // float32 noise through norms and sums, relative to the logits' range; a wrong group or
    // scale, or float activations, miss by orders of magnitude more.
    expect(relative(native, reference)).toBeLessThan(1e-5)
    expect(relative(decodedLogits(m, params, [[token]], [1], "fp32"), reference)).toBeGreaterThan(1e-4)
    tf.dispose(Object.values(params))
  })

  describe(`stays within ${FP32_BOUND} of fp32's logits, relative to their range`, () => {
    const model = (a: ReturnType<typeof attention>, extra: Partial<Parameters<typeof decoder>[0]> = {}): DecoderSpec =>
      decoder({ vocab: 23, width: 40, context: 24, posenc: posenc("rope"), layers: depth(2, block({ attention: a, ffn: ffn("swiglu", { hidden: 36 }) })), ...extra })
    it.each([
      { label: "dense, tied head", spec: () => model(attention("full", { heads: 2 }), { tied: true }) },
      { label: "sliding window", spec: () => model(representative["sliding-window"]) },
      { label: "Longformer", spec: () => model(representative.longformer) },
      { label: "causal Linformer", spec: () => model(representative["linformer-causal"]) },
      {
        label: "early exit, per-block heads",
        spec: () => model(attention("full", { heads: 2 }), { layers: depth(3, block({ attention: attention("full", { heads: 2 }), ffn: ffn("gelu") }), earlyExit({ measure: "softmax", heads: "per-block", threshold: 0.5 })) }),
      },
      {
        // The router and predictor are linear ops too: int8 like the rest.
        label: "mixture-of-depths (one sequence, as it decodes)",
        batch: 1,
        spec: () => model(attention("full", { heads: 2 }), { layers: depth(4, block({ attention: attention("full", { heads: 2 }), ffn: ffn("gelu") }), mixtureOfDepths({ capacity: 0.5, every: 2, predictor: 8 })) }),
      },
    ] as { label: string; spec: () => DecoderSpec; batch?: number }[])("$label", ({ spec, batch }) => {
      expect(againstFp32(spec(), batch ?? 2)).toBeLessThan(FP32_BOUND)
    })
  })

  describe("a trained model (test/fixtures/pre-stack)", () => {
    const fixtures = join(import.meta.dirname, "../fixtures/pre-stack")
    const quiet = Layer.succeed(ProgressSink, { isTTY: false, columns: () => 80, write: () => {}, now: () => performance.now() })
    /** The body on an opened run, inside its scope (which disposes the parameters). */
    const withRun = (variant: string, body: (open: OpenRun) => void) =>
      Effect.runPromise(Effect.scoped(Effect.map(openRun(join(fixtures, variant)), body)).pipe(Effect.provide(Layer.merge(NodeServices.layer, quiet))))
    const story = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends. One day, she saw a big red ball."

    it.each(["llama", "gpt2", "linformer"])("%s: greedy choices mostly those of fp32, and a validation loss close to fp32's", (variant) =>
      withRun(variant, ({ model, params, tokenizer }) => {
        const before = tf.memory().numTensors
        // Teacher-forced on a story: at each position the likeliest next token, int8 against fp32.
        const tokens = Array.from(tokenizer.encode(story)).slice(0, model.spec.context)
        const argmax = (weights: Weights) => {
          const logits = decodedLogits(model, params, [tokens], [tokens.length], weights)
          const v = model.spec.vocab
          return tokens.map((_, t) => logits.subarray(t * v, (t + 1) * v).reduce((best, x, j, row) => (x > row[best]! ? j : best), 0))
        }
        const [int8, fp32] = [argmax("int8"), argmax("fp32")]
        const agree = int8.filter((id, t) => id === fp32[t]).length / tokens.length
        // A trained model's top choice is rarely within int8's noise of the runner-up: 90% of positions.
        expect(agree).toBeGreaterThanOrEqual(0.9)
        // Sampled greedily from a prompt, 40 tokens (the cache restarted past the context of 32):
        // 90% of positions hold fp32's token (one early difference would change the rest).
        const greedy = (weights: Weights) => generate(model, params, Array.from(tokenizer.encode("Once upon a time")), { tokens: 40, temperature: 0, weights }, Rng.fromSeed(1))
        const [g8, g32] = [greedy("int8"), greedy("fp32")]
        expect(g8.filter((id, i) => id === g32[i]).length).toBeGreaterThanOrEqual(0.9 * g32.length)
        // Validation loss over the story's windows, teacher-forced through the int8 program.
        const ids = Uint32Array.from([...tokenizer.encode(story), tokenizer.eotId, ...tokenizer.encode(story.toLowerCase())])
        const batches = () => evalBatches(ids, { batch: 2, context: model.spec.context, padId: tokenizer.eotId })
        const q = evaluate(model, params, batches(), 4, undefined, "int8")
        const f = evaluate(model, params, batches(), 4)
        expect(q.tokens).toBe(f.tokens)
        expect(q.bpb).not.toBe(f.bpb)
        // The budget: at most 0.01 bits per byte (here at a nominal 4 bytes per token).
        expect(Math.abs(q.bpb - f.bpb)).toBeLessThan(0.01)
        expect(tf.memory().numTensors).toBe(before)
    }))

    it("through the program in fp32, the evaluation is the model's own loss", () =>
      withRun("llama", ({ model, params, tokenizer }) => {
        // The int8 evaluation's path (decodedLoss) is exact apart from the weights: with fp32 weights forced through it, it equals model.loss.
        const ids = Uint32Array.from([...tokenizer.encode(story), tokenizer.eotId])
        const batches = () => evalBatches(ids, { batch: 2, context: model.spec.context, padId: tokenizer.eotId })
        const viaProgram = evaluate({ ...model, apply: (p, t, o) => model.apply(p, t, { ...o, weights: "fp32" }) }, params, batches(), 4, undefined, "int8")
        expect(viaProgram.loss).toBeCloseTo(evaluate(model, params, batches(), 4).loss, 4)
    }))

    it("`generate --weights int8` and `eval --weights int8` run; without the native program they are refused", async () => {
      const dir = join(fixtures, "llama")
      const out = await runInProcess(generateCommand, [dir, "--weights", "int8", "--tokens", "8", "--temperature", "0"])
      expect(out.code).toBe(0)
      expect(out.stdout.startsWith("Once upon a time")).toBe(true)
      const tmp = mkdtempSync(join(tmpdir(), "int8-eval-"))
      try {
        const data = join(tmp, "valid.txt")
        writeFileSync(data, `${story}\n<|endoftext|>\n${story.toLowerCase()}\n`)
        const evaluated = await runInProcess(evalCommand, [dir, "--weights", "int8", "--data", data])
        expect(evaluated.code).toBe(0)
        const result = JSON.parse(evaluated.stdout) as { valBpb: number; weights: string }
        expect(result.weights).toBe("int8")
        expect(result.valBpb).toBeGreaterThan(0)
      } finally {
        rmSync(tmp, { recursive: true, force: true })
      }
      for (const command of [generateCommand, evalCommand]) {
        const refused = await runInProcess(command, [dir, "--weights", "int8", "--backend", "cpu"])
        expect(refused.code).toBe(2)
        expect(refused.stderr).toMatch(/--weights int8 runs on the native decode program only/)
      }
      const bad = await runInProcess(generateCommand, [dir, "--weights", "int4"])
      expect(bad.code).toBe(2)
      expect(bad.stderr).toMatch(/weights/)
    })
  })
})
