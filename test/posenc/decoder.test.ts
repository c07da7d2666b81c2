import * as tf from "@tensorflow/tfjs"
import { Result } from "effect"
import { beforeAll, describe, expect, it } from "vitest"
import { attention, block, decodeSpec, decoder, depth, ffn, norm, type DecoderSpec } from "../../dsl/index.js"
import { compile, DecodeCache, initValues, type Model, type ParamValues } from "../../src/model/index.js"
import { posenc, posencKinds, type PosencOptions, type PosencSpec, type PosencTag } from "../../dsl/kinds/posenc/index.js"

/** Every registered position scheme inside a decoder: causality, cached decoding, length limits, checks. */
beforeAll(async () => {
  await tf.setBackend("cpu")
})

const heads = 4
/** Options for the schemes that cannot be built without some (t5 needs the head count). */
const required: { readonly [K in PosencTag]?: PosencOptions<K> } = { t5: [{ heads }] }
const schemeSpec = (kind: PosencTag): PosencSpec => (posenc as (k: PosencTag, ...o: unknown[]) => PosencSpec)(kind, ...(required[kind] ?? []))

const model = (scheme: PosencSpec, context = 10): DecoderSpec =>
  decoder({
    vocab: 30,
    width: 16,
    context,
    posenc: scheme,
    layers: depth(2, block({ attention: attention("full", { heads }), ffn: ffn("gelu"), norm: norm("layer") })),
  })

/** Parameters scaled well above the 0.02 init so position effects are far above float32 noise. */
const bigParams = (m: Model, seed: number): ParamValues => {
  const values = initValues(m.table, seed)
  return Object.fromEntries(m.table.map((p) => [p.name, tf.tensor(values.get(p.name)!.map((v) => v * 10 + (v === 0 ? 0.1 : 0)), [...p.decl.shape])]))
}

const kinds = Object.keys(posencKinds) as PosencTag[]
const seq = [5, 3, 8, 1, 9, 2, 7, 4, 6, 0]

describe.each(kinds)("posenc %s in a decoder", (kind) => {
  const m = compile(model(schemeSpec(kind)))
  const params = bigParams(m, 11)
  const logitsOf = (tokens: number[]) => m.apply(params, tf.tensor2d([tokens], [1, tokens.length], "int32")).arraySync()[0]!

  it("is causal: later tokens never change earlier logits", () => {
    const la = logitsOf(seq)
    for (const t of [0, 4, 8]) {
      const lb = logitsOf(seq.map((x, i) => (i > t ? (x + 7) % 30 : x)))
      for (let s = 0; s <= t; s++) for (let v = 0; v < 30; v++) expect(Math.abs(la[s]![v]! - lb[s]![v]!)).toBeLessThan(1e-4)
      expect(Math.max(...la[t + 1]!.map((x, v) => Math.abs(x - lb[t + 1]![v]!)))).toBeGreaterThan(1e-3)
    }
  })

  it("gives the same logits decoding with a KV cache as a full forward", () => {
    const full = logitsOf(seq)
    const cache = new DecodeCache()
    // A three-token prefill (several queries against the cache), then one token at a time.
    const steps = [seq.slice(0, 3), ...seq.slice(3).map((x) => [x])]
    const cached = steps.flatMap((tokens) => m.apply(params, tf.tensor2d([tokens], [1, tokens.length], "int32"), { cache }).arraySync()[0]!)
    cache.dispose()
    expect(cached).toHaveLength(seq.length)
    for (let t = 0; t < seq.length; t++) for (let v = 0; v < 30; v++) expect(Math.abs(cached[t]![v]! - full[t]![v]!)).toBeLessThan(1e-3 * (1 + Math.abs(full[t]![v]!)))
  })

  it("passes finite gradients to every parameter, its own included", () => {
    const variables = Object.fromEntries(Object.entries(params).map(([n, t]) => [n, tf.variable(t)]))
    const batch = { tokens: tf.tensor2d([[...seq, 1]], [1, seq.length + 1], "int32"), mask: tf.ones([1, seq.length]) as tf.Tensor2D }
    const { value, grads } = tf.variableGrads(() => m.loss(variables, batch), Object.values(variables))
    expect(Number.isFinite(value.dataSync()[0]!)).toBe(true)
    for (const [name, g] of Object.entries(grads)) {
      const values = g.dataSync()
      expect(values.every(Number.isFinite), name).toBe(true)
      expect(values.some((v) => v !== 0), name).toBe(true)
    }
    tf.dispose([value, ...Object.values(grads), ...Object.values(variables)])
  })

  it("runs past the training context exactly when its maxLength allows", () => {
    const short = compile(model(schemeSpec(kind), 4))
    const p = bigParams(short, 2)
    const run = () => short.apply(p, tf.tensor2d([seq], [1, seq.length], "int32"))
    const limit = posencKinds[kind].maxLength?.(schemeSpec(kind) as never, { vocab: 30, width: 16, context: 4, layers: 2 })
    if (limit === undefined) expect(run().shape).toEqual([1, seq.length, 30])
    else expect(run).toThrow(/longer than the 4 positions/)
  })
})

describe("position scheme structural checks", () => {
  const errorOf = (spec: DecoderSpec): string => {
    const r = decodeSpec(JSON.parse(JSON.stringify(spec)))
    if (Result.isSuccess(r)) throw new Error("expected the spec to be rejected")
    return r.failure.message
  }

  it("rejects rotary dims beyond the head dim, and odd ones", () => {
    expect(errorOf(model(posenc("rope", { dims: 6 })))).toMatch(/at \["posenc","dims"\]: 6 rotary dims exceed the head dim 4 .*attention at \["layers","block","layers",0,"body",1\]/)
    expect(errorOf(model(posenc("rope", { dims: 3 })))).toMatch(/at \["posenc","dims"\]: Expected a value that is a multiple of 2/)
    expect(Result.isSuccess(decodeSpec(JSON.parse(JSON.stringify(model(posenc("rope", { dims: 2 }))))))).toBe(true)
  })

  it("rejects rotary schemes on an odd head dim", () => {
    const odd = (scheme: PosencSpec) =>
      decoder({ vocab: 30, width: 12, context: 8, posenc: scheme, layers: depth(1, block({ attention: attention("full", { heads: 4 }), ffn: ffn("relu"), norm: norm("layer") })) })
    expect(errorOf(odd(posenc("rope")))).toMatch(/at \["posenc"\]: head dim 3 is odd/)
    expect(errorOf(odd(posenc("xpos")))).toMatch(/at \["posenc"\]: head dim 3 is odd/)
  })

  it("rejects a t5 table with fewer heads than an attention layer", () => {
    expect(errorOf(model(posenc("t5", { heads: 2 })))).toMatch(/at \["posenc","heads"\]: the bias table has 2 heads, fewer than the 4 of the attention layer/)
    expect(errorOf(model(posenc("t5", { heads, buckets: 32, maxDistance: 16 })))).toMatch(/at \["posenc","maxDistance"\]: 16 must exceed the 16 exact buckets/)
  })

  it("shares the t5 table across layers and counts it with the embeddings", () => {
    const m = compile(model(posenc("t5", { heads })))
    expect(m.table.filter((p) => p.name.startsWith("posenc")).map((p) => [p.name, p.decl.shape])).toEqual([["posenc.table", [32, heads]]])
    expect(m.counts.embedding).toBe(30 * 16 + 32 * heads)
  })
})
