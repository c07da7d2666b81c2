import * as tf from "@tensorflow/tfjs"
import { afterEach, beforeAll, describe, expect, it } from "vitest"
import { attention, block, decoder, depth, earlyExit, ffn, layerDrop, mixtureOfDepths, posenc, type DecoderSpec, type DepthPolicy } from "../../dsl/index.js"
import { attentionModule, type AttentionKindTag, type AttentionSpec } from "../../dsl/kinds/attention/index.js"
import type { Measure } from "../../dsl/kinds/depth/early-exit.js"
import { posencKinds, type PosencSpec, type PosencTag } from "../../dsl/kinds/posenc/index.js"
import { fusedRowCosine } from "../../src/backend/fused.js"
import { DepthTrace } from "../../src/depth/trace.js"
import { generate } from "../../src/eval/generate.js"
import { compile, DecodeCache, type Model, type ParamValues } from "../../src/model/index.js"
import { Rng } from "../../src/random/rng.js"
import { uneven } from "../attention/examples.js"
import { describeNative } from "../backend/native-suite.js"
import { bigParams, ids, programRuns, relativeDiff } from "./fixtures.js"

/**
 * Depth policies on the native decode program against their tfjs computation with a cache:
 * the same logits step by step, the same exits per token, the same blocks and FLOPs in the
 * trace, the same sampled tokens, no tensors left behind.
 */
beforeAll(async () => {
  await tf.setBackend("native")
})

afterEach(() => {
  delete process.env["TFJS_NATIVE_DECODE"]
})

/** A prompt of 7, single tokens, a chunk of 5, single tokens: 18 positions. */
const STEPS = [7, 1, 1, 1, 1, 5, 1, 1] as const

/** Logits of rows decoded with a cache in chunks of `steps` on the native path or tfjs's, counted in the trace; `ran` gets its blocks run after each step. */
const decoded = (m: Model, params: ParamValues, rows: number[][], native: boolean, trace: DepthTrace, ran: number[][] = []): tf.Tensor3D => {
  process.env["TFJS_NATIVE_DECODE"] = native ? "1" : "0"
  const cache = new DecodeCache()
  const parts: tf.Tensor3D[] = []
  let at = 0
  for (const n of STEPS) {
    parts.push(tf.tidy(() => m.apply(params, tf.tensor2d(rows.map((r) => r.slice(at, at + n)), [rows.length, n], "int32"), { cache, trace })))
    at += n
    ran.push([...trace.ran])
  }
  cache.dispose()
  const all = tf.concat(parts, 1) as tf.Tensor3D
  tf.dispose(parts)
  return all
}

const model = (policy: DepthPolicy, kind: AttentionSpec, scheme: PosencSpec, blocks = 3): DecoderSpec =>
  decoder({ vocab: 29, width: 16, context: 24, tied: false, posenc: scheme, layers: depth(blocks, block({ attention: kind, ffn: ffn("gelu") }), policy) })

/** Big parameters from `seed`; T5's bias on the scale of their scores, so that each bucket's value counts. */
const paramsFor = (m: Model, seed: number): ParamValues => {
  const params = bigParams(m, seed)
  const table = params["posenc.table"]
  if (m.spec.posenc.kind !== "t5" || table === undefined) return params
  const scaled = { ...params, "posenc.table": tf.mul(table, 100) }
  table.dispose()
  return scaled
}

/** The native path against tfjs's on rows of `batch` sequences, parameters from `seed`; returns the native trace, and its blocks run after each step in `ran`. */
const compare = (spec: DecoderSpec, batch = 1, replay?: DepthTrace["replay"], ran: number[][] = [], seed = 3): DepthTrace => {
  const m = compile(spec)
  const params = paramsFor(m, seed)
  const rows = Array.from({ length: batch }, (_, b) => ids(b + 1, 18, spec.vocab))
  const runs = programRuns()
  try {
    const before = tf.memory().numTensors
    const fast = new DepthTrace(replay)
    const native = decoded(m, params, rows, true, fast, ran)
    expect(runs.count()).toBe(STEPS.length)
    const slow = new DepthTrace(replay)
    const reference = decoded(m, params, rows, false, slow)
    expect(runs.count()).toBe(STEPS.length)
    expect(fast.exits).toEqual(slow.exits)
    expect(fast.totals()).toEqual(slow.totals())
    expect(relativeDiff(native, reference)).toBeLessThan(1e-4)
    tf.dispose([native, reference])
    expect(tf.memory().numTensors).toBe(before)
    return fast
  } finally {
    runs.restore()
    tf.dispose(Object.values(params))
  }
}

const kinds: ReadonlyArray<readonly [AttentionSpec, PosencSpec]> = [
  [attention("full", { heads: 2 }), posenc("rope")],
  [attention("sparse-strided", { heads: 2, stride: 4, combine: "merged" }), posenc("alibi")],
  [attention("sliding-window", { heads: 2, window: [3, 6, 4], dilation: [1, 2] }), posenc("learned")],
  [attention("longformer", { heads: 2, window: 4, global: [0, 9] }), posenc("rope")],
]

describeNative("depth policies on the native decode program", () => {
  it("LayerDrop decodes natively as the plain stack it is at inference, counted as tfjs counts it", () => {
    const trace = compare(model(layerDrop({ rate: 0.3 }), attention("full", { heads: 2 }), posenc("rope")))
    expect(trace.ran).toEqual([18, 18, 18])
  })

  const thresholds: Readonly<Record<Measure, number>> = { softmax: 0.9, saturation: 0.3 }
  const cases = (["softmax", "saturation"] as const).flatMap((measure) =>
    (["shared", "per-block"] as const).flatMap((heads) => kinds.map(([kind, scheme]) => ({ measure, heads, kind, scheme, label: `${kind.kind} with ${scheme.kind}` }))),
  )
  it.each(cases)("early exit by $measure, heads $heads, $label: the logits, exits and trace of tfjs", ({ measure, heads, kind, scheme }) => {
    const trace = compare(model(earlyExit({ measure, heads, threshold: thresholds[measure] }), kind, scheme))
    // Positions left at different blocks: the comparison covered exits, and gathered rows.
    expect(new Set(trace.exits.flat()).size).toBeGreaterThan(1)
  })

  it("early exit on a batch of sequences, and under a replay of exits", () => {
    const spec = model(earlyExit({ measure: "saturation", threshold: 0.3 }), attention("full", { heads: 2 }), posenc("alibi"))
    expect(new Set(compare(spec, 2).exits.flat()).size).toBeGreaterThan(1)
    const forced = [2, 0, 1, 2, 0, 1, 1, 0, 2]
    expect(compare(spec, 1, { exits: [forced] }).exits[0]!.slice(0, forced.length)).toEqual(forced)
  })

  it("early exit by saturation: a cosine at the threshold decides as the batched kernel's does, its sum order included", () => {
    // Every position's state is row 0 of the embedding before block 0 and that plus the
    // attention's output bias after it (all else is zero): products 2^60, 1 and −2^60, whose
    // one-by-one double sum loses the 1 and the Sum kernel's lanes keep it.
    const d = 16
    const before = new Float32Array(d)
    const after = new Float32Array(d)
    before.set([2 ** 30, 1], 0)
    after.set([2 ** 30, 1], 0)
    before[8] = 2 ** 30
    after[8] = -(2 ** 30)
    const [ta, tb] = [tf.tensor2d(after, [1, d]), tf.tensor2d(before, [1, d])]
    const batched = fusedRowCosine(ta, tb)!.dataSync()[0]!
    tf.dispose([ta, tb])
    let [ab, aa, bb] = [0, 0, 0]
    for (let j = 0; j < d; j++) [ab, aa, bb] = [ab + Math.fround(after[j]! * before[j]!), aa + Math.fround(after[j]! ** 2), bb + Math.fround(before[j]! ** 2)]
    const oneByOne = Math.fround(Math.fround(ab) / Math.fround(Math.sqrt(Math.fround(Math.fround(aa) * Math.fround(bb)))))
    // The two orders differ in the bits, so the case can tell the decode program's from the batched kernel's.
    expect([batched, oneByOne]).toEqual([2 ** -61, 0])
    const bits = new Float32Array([batched])
    new Int32Array(bits.buffer)[0]! -= 1
    const runs = programRuns()
    try {
      // At the cosine itself no position leaves block 0; at the float below it every one does.
      for (const [threshold, exit] of [[batched, 1], [bits[0]!, 0]] as const) {
        const m = compile(model(earlyExit({ measure: "saturation", threshold }), attention("full", { heads: 2 }), posenc("rope"), 2))
        const params = tf.tidy(() =>
          Object.fromEntries(
            m.table.map((p) => {
              const shape = [...p.decl.shape]
              if (p.name === "embed.tokens") return [p.name, tf.concat([tf.tensor2d(before, [1, d]), tf.zeros([shape[0]! - 1, d])])]
              if (p.name === "blocks.0.0.attention.bo") return [p.name, tf.sub(after, before)]
              return [p.name, tf.zeros(shape)]
            }),
          ),
        ) as ParamValues
        const rows = [Array.from({ length: 18 }, () => 0)]
        const fast = new DepthTrace()
        tf.dispose(decoded(m, params, rows, true, fast))
        expect(runs.count()).toBeGreaterThan(0)
        const slow = new DepthTrace()
        tf.dispose(decoded(m, params, rows, false, slow))
        expect(slow.exits).toEqual([Array.from({ length: 18 }, () => exit)])
        expect(fast.exits).toEqual(slow.exits)
        tf.dispose(Object.values(params))
      }
    } finally {
      runs.restore()
    }
  })

  it.each(["shared", "per-block"] as const)("early exit by softmax, heads %s, with soft-capped logits and QK-norm: the logits, exits and trace of tfjs", (heads) => {
    const spec = { ...model(earlyExit({ measure: "softmax", heads, threshold: 0.5 }), attention("full", { heads: 2, qkNorm: true }), posenc("rope")), softcap: 10 }
    // A cap loose enough for confident positions to leave early, tight enough to change every logit.
    expect(new Set(compare(spec).exits.flat()).size).toBeGreaterThan(1)
  })

  it("mixture-of-depths with soft-capped logits and QK-norm", () => {
    compare({ ...model(mixtureOfDepths({ capacity: 0.5, every: 2, predictor: 8 }), attention("full", { heads: 2, qkNorm: true }), posenc("rope"), 4), softcap: 4 })
  })

  describe("mixture-of-depths: routed blocks run only the positions their predictor chooses", () => {
    const routedModel = (scheme: PosencSpec) =>
      model(mixtureOfDepths({ capacity: 0.5, every: 2, predictor: 8 }), attention("full", { heads: 2 }), scheme, 4)
    it.each([posenc("rope"), posenc("alibi"), posenc("learned")])("$kind: the logits and trace of tfjs, single tokens routed and not", (scheme) => {
      const ran: number[][] = []
      const trace = compare(routedModel(scheme), 1, undefined, ran)
      // Blocks 1 and 3 are routed: each single-token step either ran them or not, and both happened.
      for (const block of [1, 3]) {
        const steps = ran.map((r, s) => (r[block] ?? 0) - (ran[s - 1]?.[block] ?? 0)).filter((_, s) => STEPS[s] === 1)
        expect(new Set(steps)).toEqual(new Set([0, 1]))
      }
      expect(trace.ran[0]).toBe(18)
    })

    it("samples the tokens tfjs samples", () => {
      const m = compile(routedModel(posenc("rope")))
      const params = bigParams(m, 8)
      const before = tf.memory().numTensors
      const runs = programRuns()
      const sample = (native: boolean) => {
        process.env["TFJS_NATIVE_DECODE"] = native ? "1" : "0"
        const trace = new DepthTrace()
        return { tokens: generate(m, params, [1, 2, 3], { tokens: 40, temperature: 1, trace }, Rng.fromSeed(4)), totals: trace.totals() }
      }
      const native = sample(true)
      expect(runs.count()).toBeGreaterThan(0)
      expect(native).toEqual(sample(false))
      runs.restore()
      expect(tf.memory().numTensors).toBe(before)
      tf.dispose(Object.values(params))
    })

    // Every causal kind (3 heads of 6, per-layer options for 3 blocks) under every scheme it accepts: Linformer's compressed keys take no score bias.
    const schemeFor = (kind: PosencTag): PosencSpec => (kind === "t5" ? posenc("t5", { heads: 3, buckets: 8, maxDistance: 16 }) : (posenc as (k: PosencTag) => PosencSpec)(kind))
    const routedCases = (Object.keys(uneven) as AttentionKindTag[])
      .filter((kind) => attentionModule(uneven[kind]).causal(uneven[kind]))
      .flatMap((kind) =>
        (Object.keys(posencKinds) as PosencTag[]).filter((scheme) => !(kind.startsWith("linformer") && (scheme === "alibi" || scheme === "t5"))).map((scheme) => ({ kind, scheme })),
      )
    it.each(routedCases)("a routed block of $kind with $scheme: on the program, at its own held length, as tfjs computes it", ({ kind, scheme }) => {
      // Block 1 is routed, between plain blocks 0 and 2.
      const spec = model(mixtureOfDepths({ capacity: 0.5, every: 2, predictor: 8 }), uneven[kind], schemeFor(scheme), 3)
      // Up to the first parameters whose predictor routes some positions of a chunk through it and skips others: the
      // routed attention's positions are then not the sequence's, and its queries some of the chunk's.
      const partial = (ran: number[][]) =>
        ran.some((r, s) => {
          const routed = (r[1] ?? 0) - (ran[s - 1]?.[1] ?? 0)
          return STEPS[s]! > 1 && routed > 0 && routed < STEPS[s]!
        })
      let ran: number[][] = []
      for (let seed = 3; seed < 11 && !partial(ran); seed++) {
        ran = []
        compare(spec, 1, undefined, ran, seed)
      }
      expect(partial(ran)).toBe(true)
      expect([ran.at(-1)![0], ran.at(-1)![2]]).toEqual([18, 18])
    })
  })

  it("early exit samples the tokens tfjs samples, with the same trace, leaving no tensors behind", () => {
    const m = compile(model(earlyExit({ measure: "softmax", heads: "per-block", threshold: 0.5 }), attention("full", { heads: 2 }), posenc("rope"), 4))
    const params = bigParams(m, 8)
    const before = tf.memory().numTensors
    const sample = (native: boolean, o: { temperature: number; topK?: number }) => {
      process.env["TFJS_NATIVE_DECODE"] = native ? "1" : "0"
      const trace = new DepthTrace()
      // 40 tokens: past the context of 24, so the cache restarts from its last half.
      const tokens = generate(m, params, [1, 2, 3], { tokens: 40, ...o, trace }, Rng.fromSeed(4))
      return { tokens, exits: trace.exits, totals: trace.totals() }
    }
    const runs = programRuns()
    for (const o of [{ temperature: 0 }, { temperature: 1 }, { temperature: 0.7, topK: 5 }]) {
      const native = sample(true, o)
      expect(runs.count()).toBeGreaterThan(0)
      expect(native).toEqual(sample(false, o))
      expect(new Set(native.exits.flat()).size).toBeGreaterThan(1)
    }
    runs.restore()
    expect(tf.memory().numTensors).toBe(before)
    tf.dispose(Object.values(params))
  })
})
