import * as tf from "@tensorflow/tfjs"
import { afterEach, beforeAll, describe, expect, it } from "vitest"
import { attention, block, decoder, depth, depthCosts, earlyExit, ffn, norm, posenc, residual, withPolicy, type BlockSpec, type DecoderSpec } from "../../dsl/index.js"
import { attentionModule, type AttentionKindTag, type AttentionSpec } from "../../dsl/kinds/attention/index.js"
import type { Measure } from "../../dsl/kinds/depth/early-exit.js"
import { posencKinds, type PosencSpec, type PosencTag } from "../../dsl/kinds/posenc/index.js"
import { attentionApply } from "../../src/attention/index.js"
import { DepthTrace } from "../../src/depth/trace.js"
import { compile, initValues, type Model, type ParamValues } from "../../src/model/index.js"
import { representative, uneven } from "../attention/examples.js"
import { describeNative } from "../backend/native-suite.js"
import { withReference } from "./early-exit-reference.js"

/**
 * Early exit's batched evaluation (no cache), where positions that have left compute only
 * the keys and values of later blocks whose attention allows it (full attention: queries,
 * scores, output projection and FFN only for the running positions), against the naive
 * reference that runs every position through each block's prefix: the same logits, exits
 * and blocks, and a trace that counts exactly what ran, for every attention kind and
 * position scheme, both measures, shared and per-block heads.
 */
const vocab = 19
const width = 16
type Heads = "shared" | "per-block"
const combos: ReadonlyArray<readonly [Measure, Heads]> = [
  ["softmax", "shared"],
  ["softmax", "per-block"],
  ["saturation", "shared"],
  ["saturation", "per-block"],
]

const schemeFor = (kind: PosencTag, heads = 2): PosencSpec => (kind === "t5" ? posenc("t5", { heads, buckets: 8, maxDistance: 16 }) : (posenc as (k: PosencTag) => PosencSpec)(kind))
/** Compressed keys have no position, so Linformer takes no score-bias scheme. */
const accepts = (kind: AttentionKindTag, scheme: PosencTag) => !(kind.startsWith("linformer") && (scheme === "alibi" || scheme === "t5"))
const kinds = (Object.keys(representative) as AttentionKindTag[]).filter((k) => attentionModule(representative[k]).causal(representative[k]))
const schemes = Object.keys(posencKinds) as PosencTag[]

const pre = (a: AttentionSpec): BlockSpec => block({ attention: a, ffn: ffn("gelu", { hidden: 24 }) })
/** Post-norm: the attention's residual holds it alone, a norm after each residual. */
const post = (a: AttentionSpec): BlockSpec => block([residual([a]), norm("layer"), residual([norm("rms"), ffn("relu", { hidden: 24 })]), norm("layer")])

const model = (b: BlockSpec, scheme: PosencSpec, measure: Measure, heads: Heads, threshold = 1): DecoderSpec =>
  decoder({ vocab, width, context: 12, tied: false, posenc: scheme, layers: depth(3, b, earlyExit({ measure, heads, threshold })) })

/** Weights five times the initial scale (confidences spread), zero-initialised ones (biases) 0.1. */
const paramsOf = (m: Model): ParamValues => {
  const values = initValues(m.table, 7)
  return Object.fromEntries(m.table.map((p) => [p.name, tf.tensor(values.get(p.name)!.map((v) => (v === 0 ? 0.1 : v * 5)), [...p.decl.shape])]))
}

const rows = [
  [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8],
  [2, 7, 1, 8, 2, 8, 1, 8, 2, 8, 4, 5],
]
/**
 * Sequence 0 runs block 1 at positions 0, 2, 3, 4, 6 and block 2 at 0, 3, 4; sequence 1
 * block 1 at 0, 1, 2, 8 and block 2 at 0, 1, 2. Block 1's keys and values: both sequences
 * up to position 8 (18 positions, 9 running); block 2's: up to position 4 (10, 6 running).
 */
const imposed = [
  [2, 0, 1, 2, 2, 0, 1, 0, 0, 0, 0, 0],
  [2, 2, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0],
]
const running = [24, 9, 6]
const span = [24, 18, 10]

const logitsOf = (m: Model, params: ParamValues, trace: DepthTrace) => tf.tidy(() => m.apply(params, tf.tensor2d(rows, [2, 12], "int32"), { trace }).arraySync())

const reference = withReference

const expectClose = (got: number[][][], want: number[][][]) => {
  const scale = Math.max(...want.flat(2).map(Math.abs))
  want.forEach((seq, s) => seq.forEach((row, p) => row.forEach((x, v) => expect(Math.abs(got[s]![p]![v]! - x)).toBeLessThanOrEqual(1e-5 * scale))))
}

/**
 * Counted by hand: each block in full for its running positions; for the others of its span,
 * with full attention, the K and V projections (2 · 2 · width · heads·dh), else the layers
 * through the attention; one head per position for saturation (when it leaves, or once at
 * the end), per running position and block for softmax.
 */
const handCount = (spec: DecoderSpec, measure: Measure, full: boolean, attended: boolean, inner = width): number => {
  const costs = depthCosts(spec)
  // The K and V projections to heads·dh = inner; with the scores, 4 · context · inner more.
  const keyValues = 4 * width * inner + (attended ? 4 * 12 * inner : 0)
  const blocks = costs.blocks.reduce((s, c, i) => s + running[i]! * c.full + (span[i]! - running[i]!) * (full ? keyValues : c.prefix), 0)
  const heads = measure === "softmax" ? running.reduce((a, b) => a + b, 0) : 24
  return 24 * costs.base + blocks + heads * costs.head
}

/** The policy's inference against the reference: imposed exits (and the hand count), then its own at a threshold that mixes them. */
const check = (b: BlockSpec, scheme: PosencSpec, measure: Measure, heads: Heads, full: boolean, attended = false, inner = width): void => {
  const m = compile(model(b, scheme, measure, heads))
  const params = paramsOf(m)
  const before = tf.memory().numTensors
  const fast = new DepthTrace({ exits: imposed })
  const slow = new DepthTrace({ exits: imposed })
  const got = logitsOf(m, params, fast)
  expectClose(got, reference(() => logitsOf(m, params, slow)))
  expect(fast.exits).toEqual(imposed)
  expect(fast.ran).toEqual(running)
  expect(fast.flops).toBe(handCount(m.spec, measure, full, attended, inner))
  // The reference runs every position through each prefix, beyond the spans.
  expect(fast.flops).toBeLessThan(slow.flops)

  // Its own decisions: the first threshold at which positions leave after different blocks.
  const mixed = [0.99, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05].find((threshold) => {
    const trace = new DepthTrace()
    logitsOf(compile(withPolicy(m.spec, earlyExit({ measure, heads, threshold }))), params, trace)
    return new Set(trace.exits.flat()).size >= 2
  })
  expect(mixed).toBeDefined()
  const own = compile(withPolicy(m.spec, earlyExit({ measure, heads, threshold: mixed! })))
  const a = new DepthTrace()
  const z = new DepthTrace()
  const ownGot = logitsOf(own, params, a)
  expectClose(ownGot, reference(() => logitsOf(own, params, z)))
  expect(a.exits).toEqual(z.exits)
  expect(a.ran).toEqual(z.ran)
  expect(a.flops).toBeLessThanOrEqual(z.flops)
  expect(tf.memory().numTensors).toBe(before)
  tf.dispose(Object.values(params))
}

describe("early exit without a cache: positions that left compute only keys and values", () => {
  beforeAll(async () => {
    await tf.setBackend("cpu")
  })

  it("the kinds that declare keys and values alone (dsl) are those that compute them (src)", () => {
    const declared = (Object.keys(representative) as AttentionKindTag[]).filter((k) => attentionModule(representative[k]).keyValues !== undefined)
    expect(declared).toEqual(["full"])
    for (const k of Object.keys(representative) as AttentionKindTag[]) expect(attentionApply(representative[k]).attendRows !== undefined).toBe(declared.includes(k))
  })

  it("the costs: full attention's keys and values are its K and V projections; other kinds have none", () => {
    for (const kind of kinds) {
      const costs = depthCosts(model(pre(representative[kind]), schemeFor("none"), "softmax", "shared"))
      for (const c of costs.blocks) expect(c.keyValues).toBe(kind === "full" ? 4 * width * width : undefined)
    }
    // Post-norm: the same K and V, the attention alone in its residual.
    expect(depthCosts(model(post(representative.full), schemeFor("none"), "softmax", "shared")).blocks[1]!.keyValues).toBe(4 * width * width)
  })

  describe.each(combos)("%s measure, %s head", (measure, heads) => {
    it.each(schemes)("full attention, %s", (scheme) => check(pre(representative.full), schemeFor(scheme), measure, heads, true))
  })

  it.each(schemes)("full attention with QK-norm, post-norm blocks, %s", (scheme) => check(post({ ...representative.full, qkNorm: true }), schemeFor(scheme), "saturation", "per-block", true))

  // Pruned heads keep their head size: one head of 8 where the width would give 16.
  it.each(schemes)("full attention with pruned heads (one of width 8), %s", (scheme) =>
    check(pre(attention("full", { heads: 1, headDim: 8 })), schemeFor(scheme, 1), "saturation", "shared", true, false, 8),
  )

  const others = kinds.filter((k) => k !== "full").flatMap((kind) => schemes.filter((s) => accepts(kind, s)).map((scheme) => ({ kind, scheme })))
  // Per-layer options for three blocks; 3 heads of 6.
  it.each(others.map((c, i) => ({ ...c, combo: combos[i % combos.length]! })))(
    "$kind with $scheme ($combo.0, $combo.1): the prefix, as before",
    ({ kind, scheme, combo }) => check(pre(uneven[kind]), schemeFor(scheme, 3), combo[0], combo[1], false),
  )
})

describeNative("early exit without a cache, on the native backend", () => {
  beforeAll(async () => {
    await tf.setBackend("native")
  })
  afterEach(() => {
    delete process.env["TFJS_NATIVE_FUSED_ATTENTION"]
  })
  // Blocks 1 and 2 have at most 5 of 9 and 3 of 5 running positions per sequence, so the fused kernel over every row costs less, where it applies (not to t5's bias).
  it.each(schemes)("full attention, %s: the fused causal kernel over every row, the rows that left with zero queries", (scheme) =>
    check(pre(representative.full), schemeFor(scheme), "saturation", "shared", true, scheme !== "t5"),
  )
  it.each(schemes)("full attention, %s, fused attention off: scores for the running queries only", (scheme) => {
    process.env["TFJS_NATIVE_FUSED_ATTENTION"] = "0"
    check(post({ ...representative.full, qkNorm: true }), schemeFor(scheme), "softmax", "per-block", true)
  })
})
