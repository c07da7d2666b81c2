import * as tf from "@tensorflow/tfjs"
import { Result } from "effect"
import { beforeAll, describe, expect, it } from "vitest"
import { attention, block, decodeSpec, decoder, depth, ffn, posenc, stack, type DecoderSpec } from "../../dsl/index.js"
import { attentionKinds, attentionModule, type AttentionKindTag, type AttentionSpec } from "../../dsl/kinds/attention/index.js"
import { compile, DecodeCache } from "../../src/model/index.js"
import type { PosencSpec } from "../../dsl/kinds/posenc/index.js"
import { representative, uneven } from "./examples.js"
import { maxDiff } from "./helpers.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const model = (spec: AttentionSpec, pos: PosencSpec = posenc("learned"), allowNonCausal = false): DecoderSpec =>
  decoder({ vocab: 17, width: 16, context: 24, layers: depth(2, block({ attention: spec, ffn: ffn("gelu") })), posenc: pos, allowNonCausal })

/**
 * A stack whose blocks differ: the kind with 3 heads of 6 in blocks 0 and 2 (with a ReLU FFN
 * of exact width 20 and a SwiGLU of 24), one dense head of 10 between them (GELU, 2× wide).
 */
const stacked = (kind: AttentionKindTag, pos: PosencSpec = posenc("learned"), allowNonCausal = false): DecoderSpec =>
  decoder({
    vocab: 17,
    width: 16,
    context: 24,
    posenc: pos,
    allowNonCausal,
    layers: stack([
      block({ attention: uneven[kind], ffn: ffn("relu", { hidden: 20 }) }),
      block({ attention: attention("full", { heads: 1, headDim: 10 }), ffn: ffn("gelu", { mult: 2 }) }),
      block({ attention: uneven[kind], ffn: ffn("swiglu", { hidden: 24 }) }),
    ]),
  })

const kinds = Object.keys(attentionKinds) as AttentionKindTag[]
const tokens = (seed: number, n: number) => Array.from({ length: n }, (_, i) => (i * 7 + seed * 3 + ((i * i) % 5)) % 17)

const shapes = [
  { shape: "equal blocks", build: (kind: AttentionKindTag, pos?: PosencSpec, allow = false) => model(representative[kind], pos, allow) },
  { shape: "a stack of different blocks", build: stacked },
]

describe.each(shapes)("causality over every registered attention kind, $shape", ({ build }) => {
  it.each(kinds)("%s: future tokens change past logits only if the kind says it is not causal", (kind) => {
    const spec = representative[kind]
    const m = compile(build(kind, undefined, true))
    const params = m.init(1)
    const a = tokens(1, 24)
    const logits = (ids: number[]) => m.apply(params, tf.tensor2d([ids], [1, ids.length], "int32"))
    const base = logits(a)
    let leak = 0
    for (const cut of [3, 11, 17]) {
      const changed = [...a.slice(0, cut), ...tokens(5, 24 - cut)]
      leak = Math.max(leak, maxDiff(tf.slice(base, [0, 0, 0], [1, cut, 17]), tf.slice(logits(changed), [0, 0, 0], [1, cut, 17])))
    }
    if (attentionModule(spec).causal(spec)) expect(leak).toBeLessThan(1e-5)
    else expect(leak).toBeGreaterThan(1e-4)
  })
})

describe("the published Linformer", () => {
  it("the published Linformer is flagged, and the decoder refuses it unless allowed", () => {
    expect(attentionModule(representative.linformer).causal(representative.linformer)).toBe(false)
    const refused = decodeSpec(JSON.parse(JSON.stringify(model(representative.linformer))))
    expect(Result.isFailure(refused) && refused.failure.message).toMatch(
      /at \["layers","block","layers",0,"body",1,"kind"\]: linformer is not causal: .*set allowNonCausal/,
    )
    expect(Result.isSuccess(decodeSpec(JSON.parse(JSON.stringify(model(representative.linformer, undefined, true)))))).toBe(true)
    expect(Result.isSuccess(decodeSpec(JSON.parse(JSON.stringify(model(representative["linformer-causal"])))))).toBe(true)
  })
})

describe("cached generation equals the full forward pass", () => {
  // Score-bias schemes for the kinds that accept them (compressed keys have no position); in
  // the stacks, T5's table has 3 heads and the 1-head block reads its first column.
  const cases = kinds
    .filter((k) => attentionModule(representative[k]).causal(representative[k]))
    .flatMap((k) => {
      const spec = representative[k]
      const schemes: PosencSpec[] = k === "linformer-causal" ? [posenc("rope")] : [posenc("alibi"), posenc("t5", { heads: spec.heads, buckets: 8, maxDistance: 16 })]
      const stackSchemes: PosencSpec[] = k === "linformer-causal" ? [posenc("rope"), posenc("xpos")] : [posenc("rope"), posenc("alibi"), posenc("t5", { heads: 3, buckets: 8, maxDistance: 16 })]
      return [
        ...schemes.map((pos) => ({ kind: k, shape: "equal blocks", spec: model(spec, pos), scheme: pos.kind })),
        ...stackSchemes.map((pos) => ({ kind: k, shape: "a stack of different blocks", spec: stacked(k, pos), scheme: pos.kind })),
      ]
    })
  cases.push({
    kind: "sparse-strided",
    shape: "equal blocks",
    spec: model(attention("sparse-strided", { heads: 4, stride: 3, combine: "alternate" }), posenc("rope")),
    scheme: "rope",
  })

  it.each(cases)("$kind with $scheme, $shape", ({ spec }) => {
    const m = compile(spec)
    const params = m.init(2)
    const ids = tokens(3, 22)
    const full = m.apply(params, tf.tensor2d([ids], [1, 22], "int32"))
    const cache = new DecodeCache()
    // A prompt, single tokens (through the global position 9 of the longformer example), then a chunk.
    const steps = [7, ...Array.from({ length: 10 }, () => 1), 5]
    const parts: tf.Tensor[] = []
    let at = 0
    for (const n of steps) {
      parts.push(m.apply(params, tf.tensor2d([ids.slice(at, at + n)], [1, n], "int32"), { cache }))
      at += n
    }
    expect(maxDiff(tf.concat(parts, 1), full)).toBeLessThan(1e-4)
    cache.dispose()
  })

  it("the published Linformer refuses to decode with a cache", () => {
    const m = compile(model(representative.linformer, undefined, true))
    const cache = new DecodeCache()
    expect(() => m.apply(m.init(1), tf.tensor2d([[1, 2, 3]], [1, 3], "int32"), { cache })).toThrow(/not causal/)
  })
})

describe.each(kinds)("gradients in a stack of different blocks: %s", (kind) => {
  it("reach every parameter, finite and not all zero", () => {
    const m = compile(stacked(kind, posenc("rope"), true))
    const params = m.init(4)
    const ids = tokens(2, 25)
    const batch = { tokens: tf.tensor2d([ids], [1, 25], "int32"), mask: tf.ones([1, 24]) as tf.Tensor2D }
    const before = tf.memory().numTensors
    const { value, grads } = tf.variableGrads(() => m.loss(params, batch), Object.values(params) as tf.Variable[])
    const byName = new Map(Object.entries(params).map(([name, v]) => [(v as tf.Variable).name, name]))
    expect(Object.keys(grads).map((v) => byName.get(v)).sort()).toEqual(m.table.map((p) => p.name).sort())
    for (const [v, g] of Object.entries(grads)) {
      const values = g.dataSync()
      expect(values.every(Number.isFinite), byName.get(v)).toBe(true)
      expect(values.some((x) => x !== 0), byName.get(v)).toBe(true)
    }
    tf.dispose([value, ...Object.values(grads)])
    expect(tf.memory().numTensors).toBe(before)
    tf.dispose([batch.tokens, batch.mask, ...Object.values(params)])
  })
})

describe("layer-shared parameters", () => {
  it("a layerwise Linformer projection exists once and every layer reads it", () => {
    const m = compile(model(representative["linformer-causal"]))
    const shared = m.table.filter((p) => p.name.startsWith("shared."))
    expect(shared.map((p) => p.name)).toEqual(["shared.linformer.k4.e"])
    expect(m.table.some((p) => p.name.startsWith("blocks.") && p.name.endsWith(".e"))).toBe(false)
  })
})
