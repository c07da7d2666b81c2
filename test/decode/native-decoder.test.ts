import * as tf from "@tensorflow/tfjs"
import { afterEach, beforeAll, describe, expect, it } from "vitest"
import { activation, attention, block, decoder, depth, ffn, norm, posenc, residual, stack, type DecoderSpec } from "../../dsl/index.js"
import { activationKinds, type ActivationTag } from "../../dsl/kinds/activation/index.js"
import { attentionModule, type AttentionKindTag } from "../../dsl/kinds/attention/index.js"
import { posencKinds, type PosencSpec, type PosencTag } from "../../dsl/kinds/posenc/index.js"
import type { NativeBackend } from "../../src/backend/native/backend.js"
import { ACT_CAP, OP } from "../../src/decode/program.js"
import { generate } from "../../src/eval/generate.js"
import { compile, DecodeCache, type Model, type ParamValues } from "../../src/model/index.js"
import { Rng } from "../../src/random/rng.js"
import { representative, uneven } from "../attention/examples.js"
import { describeNative } from "../backend/native-suite.js"
import { bigParams, ids, programRuns, relativeDiff } from "./fixtures.js"

/**
 * The native decode path (src/decode/) against the tfjs computation it replaces: the same
 * logits, step by step, as the full forward pass and as tfjs's own cached decoding, for every
 * attention kind, position scheme, norm and activation, on stacks of different blocks; the
 * same sampled stories; no tensors left behind.
 */
beforeAll(async () => {
  await tf.setBackend("native")
})

afterEach(() => {
  delete process.env["TFJS_NATIVE_DECODE"]
})

/** Logits of rows [B, T] decoded with a cache in chunks of `steps`, on the native path or tfjs's. */
const decoded = (m: Model, params: ParamValues, rows: number[][], steps: readonly number[], native: boolean): tf.Tensor3D => {
  process.env["TFJS_NATIVE_DECODE"] = native ? "1" : "0"
  const cache = new DecodeCache()
  const parts: tf.Tensor3D[] = []
  let at = 0
  for (const n of steps) {
    parts.push(tf.tidy(() => m.apply(params, tf.tensor2d(rows.map((r) => r.slice(at, at + n)), [rows.length, n], "int32"), { cache })))
    at += n
  }
  cache.dispose()
  const all = tf.concat(parts, 1) as tf.Tensor3D
  tf.dispose(parts)
  return all
}

/** A prompt of 7, single tokens, a chunk of 5, single tokens: 18 positions. */
const STEPS = [7, 1, 1, 1, 1, 5, 1, 1] as const

/** The native path's logits equal the full forward pass and tfjs's cached decoding. */
const checkSpec = (spec: DecoderSpec, batch = 1, steps: readonly number[] = STEPS): void => {
  const m = compile(spec)
  const params = bigParams(m, 3)
  const total = steps.reduce((a, b) => a + b, 0)
  const rows = Array.from({ length: batch }, (_, b) => ids(b + 1, total, spec.vocab))
  const runs = programRuns()
  try {
    const before = tf.memory().numTensors
    const full = tf.tidy(() => m.apply(params, tf.tensor2d(rows, [batch, total], "int32")))
    const native = decoded(m, params, rows, steps, true)
    expect(runs.count()).toBe(steps.length)
    const reference = decoded(m, params, rows, steps, false)
    expect(runs.count()).toBe(steps.length)
    expect(relativeDiff(native, full)).toBeLessThan(1e-4)
    expect(relativeDiff(native, reference)).toBeLessThan(1e-4)
    tf.dispose([native, reference, full])
    expect(tf.memory().numTensors).toBe(before)
  } finally {
    runs.restore()
    tf.dispose(Object.values(params))
  }
}

const kinds = Object.keys(representative) as AttentionKindTag[]
const schemes = Object.keys(posencKinds) as PosencTag[]
const schemeFor = (kind: PosencTag, heads: number): PosencSpec =>
  kind === "t5" ? posenc("t5", { heads, buckets: 8, maxDistance: 16 }) : (posenc as (k: PosencTag) => PosencSpec)(kind)
/** Compressed keys have no position, so Linformer takes no score-bias scheme. */
const accepts = (kind: AttentionKindTag, scheme: PosencTag) => !(kind.startsWith("linformer") && (scheme === "alibi" || scheme === "t5"))

/** Every causal kind with each of `among` it accepts. */
const causalCases = (among: ReadonlyArray<PosencTag>) =>
  kinds
    .filter((k) => attentionModule(representative[k]).causal(representative[k]))
    .flatMap((kind) => among.filter((s) => accepts(kind, s)).map((scheme) => ({ kind, scheme })))

/** Two blocks of `kind` under `scheme`; `qkNorm` and `softcap` when given. */
const twoBlocks = (kind: AttentionKindTag, scheme: PosencTag, options: { qkNorm?: boolean; softcap?: number } = {}) =>
  decoder({
    vocab: 17,
    width: 16,
    context: 24,
    posenc: schemeFor(scheme, 2),
    ...(options.softcap === undefined ? {} : { softcap: options.softcap }),
    layers: depth(2, block({ attention: options.qkNorm ? { ...representative[kind], qkNorm: true } : representative[kind], ffn: ffn("gelu") })),
  })

describeNative("native decoding", () => {
  describe("every causal attention kind with every position scheme", () => {
    it.each(causalCases(schemes))("$kind with $scheme", ({ kind, scheme }) => checkSpec(twoBlocks(kind, scheme)))
  })

  describe("QK-norm in every causal attention kind, and soft-capped logits", () => {
    it.each(causalCases(["rope", "xpos", "alibi"]))("$kind with $scheme", ({ kind, scheme }) => checkSpec(twoBlocks(kind, scheme, { qkNorm: true, softcap: 2 })))

    it("with uneven heads, a batch and the tied or untied head", () => {
      for (const tied of [true, false]) {
        const spec = decoder({
          vocab: 21,
          width: 16,
          context: 24,
          posenc: posenc("rope"),
          tied,
          softcap: 3,
          layers: stack([block({ attention: { ...uneven.full, qkNorm: true }, ffn: ffn("relu") }), block({ attention: { ...uneven.longformer, qkNorm: true }, ffn: ffn("gelu"), norm: norm("rms") })]),
        })
        checkSpec(spec, 2)
      }
    })
  })

  describe("every activation and norm, with and without biases", () => {
    const activations = Object.keys(activationKinds) as ActivationTag[]
    const cases = activations.flatMap((act) => (["layer", "rms"] as const).flatMap((n) => [true, false].map((bias) => ({ act, n, bias }))))
    it.each(cases)("$act, $n norm, bias $bias", ({ act, n, bias }) => {
      const spec = decoder({
        vocab: 19,
        width: 16,
        context: 24,
        posenc: posenc("rope"),
        norm: norm(n),
        layers: depth(2, block({ attention: attention("full", { heads: 4, bias }), ffn: ffn(act === "swish" ? activation("swish", { beta: 1.7 }) : act, { bias, hidden: 24 }), norm: norm(n) })),
      })
      checkSpec(spec)
    })
  })

  describe("a stack of different blocks, mixing native and tfjs layers", () => {
    /** Blocks of different kinds, head counts and sizes, FFNs and arrangements (a post-norm block), Longformer and causal Linformer among them. */
    const mixed = (scheme: PosencSpec, withLinformer: boolean): DecoderSpec =>
      decoder({
        vocab: 21,
        width: 16,
        context: 24,
        posenc: scheme,
        layers: stack([
          block({ attention: uneven.full, ffn: ffn("relu", { hidden: 20 }) }),
          block({ attention: attention("sliding-window", { heads: 3, headDim: 6, window: 3, dilation: [1, 2, 1] }), ffn: ffn("gelu-tanh", { mult: 2 }), norm: norm("rms") }),
          block({ attention: uneven.longformer, ffn: ffn("swiglu", { hidden: 24 }) }),
          block([residual([uneven["sparse-fixed"]]), norm("layer"), residual([ffn("reglu", { hidden: 12 })]), norm("layer")]),
          block({ attention: withLinformer ? uneven["linformer-causal"] : attention("full", { heads: 1, headDim: 10 }), ffn: ffn("relu2") }),
        ]),
      })
    it.each([
      { scheme: posenc("rope"), linformer: true },
      { scheme: posenc("xpos"), linformer: true },
      { scheme: posenc("alibi"), linformer: false },
      { scheme: posenc("t5", { heads: 3, buckets: 8, maxDistance: 16 }), linformer: false },
      { scheme: posenc("learned"), linformer: true },
    ])("$scheme.kind", ({ scheme, linformer }) => {
      checkSpec(mixed(scheme, linformer))
    })
  })

  it("decodes a small batch of sequences at once", () => {
    const spec = decoder({ vocab: 23, width: 16, context: 24, posenc: posenc("alibi"), layers: depth(2, block({ attention: attention("full", { heads: 2 }), ffn: ffn("swiglu") })) })
    checkSpec(spec, 3)
  })

  it("grows the cache past the context when the position scheme allows it", () => {
    // Capacity 6 doubles twice; prompts longer than 8 rows go through the GEMM path.
    const spec = decoder({ vocab: 23, width: 16, context: 6, posenc: posenc("rope"), layers: depth(2, block({ attention: attention("full", { heads: 2 }), ffn: ffn("gelu") })) })
    checkSpec(spec, 1, [3, 1, 1, 10, 1, 1, 1, 1, 1, 1])
  })

  it("copies the parameters again when a variable is assigned", () => {
    const m = compile(decoder({ vocab: 17, width: 16, context: 12, posenc: posenc("rope"), layers: depth(1, block({ attention: attention("full", { heads: 2 }), ffn: ffn("gelu") })) }))
    const params = Object.fromEntries(Object.entries(bigParams(m, 5)).map(([n, t]) => [n, tf.variable(t)]))
    const logits = () => tf.tidy(() => m.apply(params, tf.tensor2d([[1, 2, 3]], [1, 3], "int32"), { cache: new DecodeCache() }).dataSync())
    const first = logits()
    const w = params["blocks.0.1.ffn.w_out"] as tf.Variable
    w.assign(tf.mul(w, 2))
    const second = logits()
    process.env["TFJS_NATIVE_DECODE"] = "0"
    const reference = logits()
    expect(first).not.toEqual(second)
    expect(Math.max(...second.map((v, i) => Math.abs(v - reference[i]!)))).toBeLessThan(1e-4)
    tf.dispose(Object.values(params))
  })

  it("leaves no tensors behind and samples the tokens tfjs samples", () => {
    const m = compile(decoder({ vocab: 29, width: 16, context: 10, posenc: posenc("learned"), layers: depth(2, block({ attention: attention("full", { heads: 2 }), ffn: ffn("gelu") })) }))
    const params = bigParams(m, 8)
    const before = tf.memory().numTensors
    const sample = (native: boolean, o: { temperature: number; topK?: number }) => {
      process.env["TFJS_NATIVE_DECODE"] = native ? "1" : "0"
      // 30 tokens: past the context of 10, so the cache restarts from the last half twice.
      return generate(m, params, [1, 2, 3], { tokens: 30, ...o }, Rng.fromSeed(4))
    }
    for (const o of [{ temperature: 0 }, { temperature: 1 }, { temperature: 0.7, topK: 5 }]) expect(sample(true, o)).toEqual(sample(false, o))
    expect(tf.memory().numTensors).toBe(before)
    tf.dispose(Object.values(params))
  })

  it("samples from soft-capped logits the tokens tfjs samples", () => {
    const m = compile(decoder({ vocab: 29, width: 16, context: 10, posenc: posenc("rope"), softcap: 2, layers: depth(2, block({ attention: attention("full", { heads: 2, qkNorm: true }), ffn: ffn("gelu") })) }))
    const params = bigParams(m, 8)
    const sample = (native: boolean, o: { temperature: number; topK?: number }) => {
      process.env["TFJS_NATIVE_DECODE"] = native ? "1" : "0"
      return generate(m, params, [1, 2, 3], { tokens: 20, ...o }, Rng.fromSeed(4))
    }
    for (const o of [{ temperature: 0 }, { temperature: 1 }, { temperature: 0.7, topK: 5 }]) expect(sample(true, o)).toEqual(sample(false, o))
    tf.dispose(Object.values(params))
  })

  it("refuses a program whose shapes disagree, and a call before its caches are bound", () => {
    const addon = (tf.backend() as NativeBackend).addon
    const weight = { values: new Float32Array(10), rows: 2, cols: 5, transpose: false }
    expect(() => addon.decodeProgram([{ code: 1, x: 0, targets: [{ w: 0, bias: -1, y: 1 }] }], [4, 3], 1, [weight], false)).toThrow(/weight must be \[output width, input width\]/)
    const ones = (n: number) => ({ values: new Float32Array(n).fill(1), rows: 1, cols: n, transpose: false })
    expect(() => addon.decodeProgram([{ code: OP.norm, x: 0, y: 1, gain: 0, bias: -1, eps: 1e-6, dh: 3 }], [4, 4], 1, [ones(3)], false)).toThrow(/heads \(no bias\) divide it/)
    expect(() => addon.decodeProgram([{ code: OP.norm, x: 0, y: 1, gain: 0, bias: -1, eps: 1e-6, dh: 2 }], [4, 4], 1, [ones(4)], false)).toThrow(/gain and bias must have its input's width, or the head's/)
    expect(() => addon.decodeProgram([{ code: OP.act, x: 0, y: 1, act: ACT_CAP, alpha: 0 }], [4, 4], 1, [], false)).toThrow(/a cap above zero/)
    const attend = { code: 2, q: 0, k: 0, v: 0, y: 1, heads: 1, dh: 4, half: 0, slot: 0, slopes: -1, scale: 0.5 }
    const program = addon.decodeProgram([attend], [4, 4], 1, [], false)
    expect(() => addon.decodeStart(program, new Float32Array(4), 1, 1, 0, null)).toThrow(/attention slot 0 is not bound to a cache/)
    addon.decodeBind(program, 0, new Float32Array(8), new Float32Array(8), 2, null, 0)
    expect(() => addon.decodeStart(program, new Float32Array(4), 1, 1, 2, null)).toThrow(/not bound to a cache that holds these positions/)
    expect(() => addon.decodeStart(program, new Float32Array(4), 1, 1, 1, null)).not.toThrow()
  })

  it("numbers the op codes as native/kernels.h does: contiguous from 0, the next one refused", () => {
    const codes = Object.values(OP).sort((a, b) => a - b)
    expect(codes).toEqual(codes.map((_, i) => i))
    const addon = (tf.backend() as NativeBackend).addon
    expect(() => addon.decodeProgram([{ code: codes.length, x: 0, y: 1 }], [4, 4], 1, [], false)).toThrow(`decodeProgram: unknown op code ${codes.length}`)
  })

  it("says which token is outside the vocabulary, and refuses a cache of another batch", () => {
    const m = compile(decoder({ vocab: 17, width: 16, context: 12, layers: depth(1, block({ attention: attention("full", { heads: 2 }), ffn: ffn("gelu") })) }))
    const params = m.init(1)
    const cache = new DecodeCache()
    expect(() => m.apply(params, tf.tensor2d([[1, 17]], [1, 2], "int32"), { cache })).toThrow(/token 17 at row 1 is outside the vocabulary \[0, 17\)/)
    const other = new DecodeCache()
    m.apply(params, tf.tensor2d([[1, 2]], [1, 2], "int32"), { cache: other })
    expect(() => m.apply(params, tf.tensor2d([[1], [2]], [2, 1], "int32"), { cache: other })).toThrow(/holds 2 positions of batch 1, not 2 of batch 2/)
    tf.dispose(Object.values(params))
  })
})

describeNative("native Longformer and Linformer", () => {
  const noBias = schemes.filter((s) => accepts("linformer", s))
  const model = (scheme: PosencTag, a: ReturnType<typeof attention>, o: { context?: number; allowNonCausal?: boolean } = {}): DecoderSpec =>
    decoder({
      vocab: 17,
      width: 16,
      context: o.context ?? 24,
      posenc: schemeFor(scheme, 3),
      ...(o.allowNonCausal ? { allowNonCausal: true } : {}),
      layers: depth(2, block({ attention: a, ffn: ffn("gelu") })),
    })

  describe("Longformer with global positions in the prompt, a single token and a chunk, windows per layer and dilations per head", () => {
    const longformer = attention("longformer", { heads: 3, headDim: 6, window: [2, 3], dilation: [1, 2, 3], global: [0, 3, 9, 13], bias: true })
    it.each(schemes)("%s", (scheme) => {
      checkSpec(model(scheme, longformer))
    })
  })

  describe("causal Linformer in every sharing mode, blocks completing in the prompt, between single tokens and inside a chunk", () => {
    const cases = (["none", "headwise", "kv", "layerwise"] as const).flatMap((sharing) => noBias.map((scheme) => ({ sharing, scheme })))
    it.each(cases)("$sharing with $scheme", ({ sharing, scheme }) => {
      checkSpec(model(scheme, attention("linformer-causal", { heads: 3, headDim: 6, k: 3, block: 4, sharing })), 2)
    })
  })

  it("shares the cache with tfjs steps in between: Longformer's packed keys, and the compressed blocks caught up from the cache", () => {
    const spec = decoder({
      vocab: 17,
      width: 16,
      context: 24,
      posenc: posenc("rope"),
      layers: stack([
        block({ attention: attention("longformer", { heads: 2, window: 2, global: [1, 8] }), ffn: ffn("gelu") }),
        block({ attention: attention("linformer-causal", { heads: 2, k: 3, block: 3, sharing: "none" }), ffn: ffn("gelu") }),
      ]),
    })
    const m = compile(spec)
    const params = bigParams(m, 6)
    const row = ids(2, 18, spec.vocab)
    // Native, then tfjs for two steps that complete a block and pass a global position, then native again.
    const paths = [true, false, false, true, true, false, true, true]
    const alternating = tf.tidy(() => {
      const cache = new DecodeCache()
      let at = 0
      const parts = STEPS.map((n, i) => {
        process.env["TFJS_NATIVE_DECODE"] = paths[i] ? "1" : "0"
        const part = m.apply(params, tf.tensor2d([row.slice(at, at + n)], [1, n], "int32"), { cache })
        at += n
        return part
      })
      return tf.concat(parts, 1)
    })
    const reference = decoded(m, params, [row], STEPS, false)
    expect(relativeDiff(alternating, reference)).toBeLessThan(1e-4)
    tf.dispose([alternating, reference, ...Object.values(params)])
  })

  describe("non-causal Linformer runs the window in the program, from position 0", () => {
    const cases = (["none", "headwise", "kv", "layerwise"] as const).flatMap((sharing) => noBias.map((scheme) => ({ sharing, scheme })))
    it.each(cases)("$sharing with $scheme", ({ sharing, scheme }) => {
      const m = compile(model(scheme, attention("linformer", { heads: 3, headDim: 6, k: 4, sharing }), { allowNonCausal: true }))
      const params = bigParams(m, 4)
      const runs = programRuns()
      try {
        const before = tf.memory().numTensors
        for (const n of [1, 7, 24]) {
          const diff = tf.tidy(() => {
            const tokens = tf.tensor2d([ids(n, n, m.spec.vocab)], [1, n], "int32")
            // Against the composed ops the program mirrors (the fused kernel sums in another order:
            // test/attention/fused-parts.test.ts compares the two); these weights make rounding large.
            process.env["TFJS_NATIVE_FUSED_ATTENTION"] = "0"
            const reference = m.apply(params, tokens)
            delete process.env["TFJS_NATIVE_FUSED_ATTENTION"]
            return relativeDiff(m.apply(params, tokens, { cache: new DecodeCache() }), reference)
          })
          expect(diff).toBeLessThan(1e-4)
        }
        expect(runs.count()).toBe(3)
        expect(tf.memory().numTensors).toBe(before)
      } finally {
        runs.restore()
        tf.dispose(Object.values(params))
      }
    })
  })

  it("refuses what tfjs refuses: a non-causal continuation, a score-bias scheme, positions past the projections", () => {
    const params = (m: Model) => m.init(1)
    const call = (m: Model, p: ParamValues, n: number, cache: DecodeCache) => tf.dispose(m.apply(p, tf.tensor2d([ids(1, n, 17)], [1, n], "int32"), { cache }))
    const noncausal = compile(model("rope", attention("linformer", { heads: 2, k: 3 }), { allowNonCausal: true }))
    const p1 = params(noncausal)
    const cache = new DecodeCache()
    call(noncausal, p1, 3, cache)
    expect(() => call(noncausal, p1, 1, cache)).toThrow(/linformer is not causal: every output depends on later tokens/)
    const alibi = compile(model("alibi", attention("linformer-causal", { heads: 2, k: 3, block: 4 })))
    const p2 = params(alibi)
    expect(() => call(alibi, p2, 2, new DecodeCache())).toThrow("linformer-causal: compressed keys have no position, so a score-bias position scheme (alibi, t5) cannot apply")
    const causal = compile(model("rope", attention("linformer-causal", { heads: 2, k: 3, block: 4 }), { context: 8 }))
    const p3 = params(causal)
    expect(() => call(causal, p3, 9, new DecodeCache())).toThrow(/linformer-causal: 9 tokens exceed the projection length 8/)
    tf.dispose([...Object.values(p1), ...Object.values(p2), ...Object.values(p3)])
  })

  it("samples the tokens tfjs samples, past the context (the cache rerun from the last half) and without a cache", () => {
    const causal = decoder({
      vocab: 29,
      width: 16,
      context: 10,
      posenc: posenc("learned"),
      layers: stack([
        block({ attention: attention("longformer", { heads: 2, window: 2, dilation: [1, 2], global: [0, 4] }), ffn: ffn("gelu") }),
        block({ attention: attention("linformer-causal", { heads: 2, k: 3, block: 3, sharing: "kv" }), ffn: ffn("gelu") }),
      ]),
    })
    const noncausal = model("rope", attention("linformer", { heads: 2, k: 4, sharing: "headwise" }), { context: 10, allowNonCausal: true })
    for (const spec of [causal, noncausal]) {
      const m = compile(spec)
      const params = bigParams(m, 8)
      const before = tf.memory().numTensors
      const runs = programRuns()
      const sample = (native: boolean, o: { temperature: number; topK?: number }) => {
        process.env["TFJS_NATIVE_DECODE"] = native ? "1" : "0"
        return generate(m, params, [1, 2, 3], { tokens: 30, ...o }, Rng.fromSeed(4))
      }
      try {
        for (const o of [{ temperature: 0 }, { temperature: 1 }, { temperature: 0.7, topK: 5 }]) {
          const start = runs.count()
          const native = sample(true, o)
          expect(runs.count() - start).toBeGreaterThanOrEqual(30)
          expect(native).toEqual(sample(false, o))
        }
      } finally {
        runs.restore()
      }
      expect(tf.memory().numTensors).toBe(before)
      tf.dispose(Object.values(params))
    }
  })
})
