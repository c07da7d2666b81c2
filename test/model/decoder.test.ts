import * as tf from "@tensorflow/tfjs"
import { beforeAll, describe, expect, it } from "vitest"
import { attention, block, decoder, depth, ffn, norm, stack, type DecoderSpec } from "../../dsl/index.js"
import { compile, initValues } from "../../src/model/index.js"
import { referenceLogits, referenceLoss, type RefConfig, type Weights } from "../reference/decoder.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const base = (o: { vocab: number; width: number; heads: number; layers: number; context: number; tied?: boolean; activation?: "relu" | "gelu"; bias?: boolean }): DecoderSpec =>
  decoder({
    vocab: o.vocab,
    width: o.width,
    context: o.context,
    tied: o.tied ?? true,
    layers: depth(o.layers, block({ attention: attention("full", { heads: o.heads, bias: o.bias ?? true }), ffn: ffn(o.activation ?? "relu", { bias: o.bias ?? true }), norm: norm("layer") })),
  })

/** GPT-2 parameter count in closed form: embeddings, 12D²+13D per block with biases, final norm, head. */
const closedForm = (V: number, D: number, L: number, T: number, tied: boolean, bias: boolean): number =>
  V * D + T * D + L * (12 * D * D + (bias ? 13 * D : 4 * D)) + 2 * D + (tied ? 0 : D * V)

describe("base decoder", () => {
  const configs = [
    { vocab: 50, width: 16, heads: 2, layers: 1, context: 8, tied: true },
    { vocab: 97, width: 24, heads: 3, layers: 3, context: 12, tied: false },
    { vocab: 4096, width: 256, heads: 4, layers: 4, context: 256, tied: true, bias: false },
    { vocab: 8192, width: 384, heads: 6, layers: 6, context: 512, tied: false },
  ]

  it.each(configs)("parameter counts equal the closed form (%o)", (c) => {
    const m = compile(base(c))
    const expected = closedForm(c.vocab, c.width, c.layers, c.context, c.tied, c.bias ?? true)
    expect(m.counts.total).toBe(expected)
    expect(m.counts.embedding).toBe(c.vocab * c.width + c.context * c.width)
    expect(m.counts.nonEmbedding).toBe(expected - c.vocab * c.width - c.context * c.width)
    // Kaplan et al. 2020: 2 FLOPs per matmul weight (12·D² per block, plus the D×V head) and
    // 2·2·T·D for attention scores and values, per layer and token.
    expect(m.flops.forward).toBe(2 * (12 * c.width * c.width * c.layers + c.width * c.vocab) + 4 * c.layers * c.context * c.width)
    expect(m.flops.training).toBe(3 * m.flops.forward)
  })

  it.each(configs.slice(0, 2))("forward gives [B, T, V] logits (%o)", (c) => {
    const m = compile(base(c))
    const p = m.init(3)
    const tokens = tf.tensor2d(Array.from({ length: 2 * 5 }, (_, i) => (i * 13) % c.vocab), [2, 5], "int32")
    const logits = m.apply(p, tokens)
    expect(logits.shape).toEqual([2, 5, c.vocab])
    tf.dispose([logits, tokens, ...Object.values(p)])
  })

  /**
   * The reference covers a stack of equal blocks and one whose blocks differ in head count,
   * head size (heads × headDim ≠ width), FFN width and activation.
   */
  const references: Array<[string, RefConfig, DecoderSpec]> = [
    [
      "two equal blocks",
      { vocab: 11, width: 8, tied: false, blocks: [0, 1].map(() => ({ heads: 2, headDim: 4, hidden: 32, activation: "gelu" as const })) },
      base({ vocab: 11, width: 8, heads: 2, layers: 2, context: 6, tied: false, activation: "gelu" }),
    ],
    [
      "a stack of different blocks",
      {
        vocab: 11,
        width: 8,
        tied: true,
        blocks: [
          { heads: 3, headDim: 4, hidden: 12, activation: "relu" },
          { heads: 1, headDim: 6, hidden: 20, activation: "gelu" },
          { heads: 2, headDim: 4, hidden: 32, activation: "gelu" },
        ],
      },
      decoder({
        vocab: 11,
        width: 8,
        context: 6,
        layers: stack([
          block({ attention: attention("full", { heads: 3, headDim: 4 }), ffn: ffn("relu", { hidden: 12 }), norm: norm("layer") }),
          block({ attention: attention("full", { heads: 1, headDim: 6 }), ffn: ffn("gelu", { hidden: 20 }), norm: norm("layer") }),
          block({ attention: attention("full", { heads: 2 }), ffn: ffn("gelu", { mult: 4 }), norm: norm("layer") }),
        ]),
      }),
    ],
    [
      "QK-norm in every block (one with a head size ≠ width / heads) and soft-capped logits",
      {
        vocab: 11,
        width: 8,
        tied: true,
        softcap: 1.5,
        blocks: [
          { heads: 2, headDim: 4, hidden: 12, activation: "gelu", qkNorm: true },
          { heads: 3, headDim: 2, hidden: 16, activation: "relu", qkNorm: true },
        ],
      },
      decoder({
        vocab: 11,
        width: 8,
        context: 6,
        softcap: 1.5,
        layers: stack([
          block({ attention: attention("full", { heads: 2, qkNorm: true }), ffn: ffn("gelu", { hidden: 12 }), norm: norm("layer") }),
          block({ attention: attention("full", { heads: 3, headDim: 2, qkNorm: true }), ffn: ffn("relu", { hidden: 16 }), norm: norm("layer") }),
        ]),
      }),
    ],
  ]
  const seq = [3, 1, 4, 1, 5, 9, 2]

  const weightsOf = (values: Map<string, Float32Array>): Weights => new Map([...values].map(([k, v]) => [k, Float64Array.from(v)]))

  describe.each(references)("against a naive float64 reference: %s", (_name, tiny, tinySpec) => {
    it("logits equal a naive float64 reference implementation", () => {
      const m = compile(tinySpec)
      const values = initValues(m.table, 5)
      // Non-trivial norms and biases, so every parameter matters.
      for (const [k, v] of values) if (/gain|bias|\.b/.test(k)) for (let i = 0; i < v.length; i++) v[i] = v[i]! + 0.1 * Math.sin(i + k.length)
      const params = Object.fromEntries(m.table.map((p) => [p.name, tf.tensor(values.get(p.name)!, [...p.decl.shape])]))
      const logits = m.apply(params, tf.tensor2d([seq.slice(0, 6)], [1, 6], "int32"))
      const ref = referenceLogits(tiny, weightsOf(values), seq.slice(0, 6))
      const got = logits.arraySync()[0]!
      for (let t = 0; t < 6; t++) for (let v = 0; v < 11; v++) expect(Math.abs(got[t]![v]! - ref[t]![v]!)).toBeLessThan(1e-5)
    })

    it("gradients equal central finite differences of the float64 reference", () => {
      const m = compile(tinySpec)
      const values = initValues(m.table, 7)
      // Larger weights than the 0.02 init, so the loss is far from flat and gradients are O(0.1).
      for (const v of values.values()) for (let i = 0; i < v.length; i++) v[i] = v[i]! * 10 + (v[i] === 0 ? 0.05 * Math.cos(i) : 0)
      const params = Object.fromEntries(m.table.map((p) => [p.name, tf.tensor(values.get(p.name)!, [...p.decl.shape])]))
      const names = m.table.map((p) => p.name)
      const batch = { tokens: tf.tensor2d([seq], [1, 7], "int32"), mask: tf.ones([1, 6]) as tf.Tensor2D }
      const grads = tf.grads((...ts: tf.Tensor[]) => m.loss(Object.fromEntries(names.map((n, i) => [n, ts[i]!])), batch))(names.map((n) => params[n]!))
      const w = weightsOf(values)
      const h = 1e-5
      let checked = 0
      names.forEach((name, idx) => {
        const g = grads[idx]!.dataSync()
        const entry = w.get(name)!
        // A few entries of every parameter: float64 differences with h = 1e-5 are exact to ~1e-9,
        // so the tolerance only has to cover the float32 forward/backward of tfjs.
        for (const i of [0, Math.floor(entry.length / 2), entry.length - 1]) {
          const orig = entry[i]!
          entry[i] = orig + h
          const up = referenceLoss(tiny, w, seq)
          entry[i] = orig - h
          const down = referenceLoss(tiny, w, seq)
          entry[i] = orig
          const fd = (up - down) / (2 * h)
          expect(Math.abs(g[i]! - fd)).toBeLessThan(2e-4 + 2e-3 * Math.abs(fd))
          checked++
        }
      })
      expect(checked).toBe(names.length * 3)
    })
  })

  it("is causal: later tokens never change earlier logits", () => {
    const m = compile(base({ vocab: 30, width: 16, heads: 4, layers: 2, context: 10 }))
    const p = m.init(11)
    const a = [5, 3, 8, 1, 9, 2, 7, 4, 6, 0]
    for (const t of [0, 3, 8]) {
      const b = a.map((x, i) => (i > t ? (x + 7) % 30 : x))
      const la = m.apply(p, tf.tensor2d([a], [1, 10], "int32")).arraySync()[0]!
      const lb = m.apply(p, tf.tensor2d([b], [1, 10], "int32")).arraySync()[0]!
      for (let s = 0; s <= t; s++) for (let v = 0; v < 30; v++) expect(Math.abs(la[s]![v]! - lb[s]![v]!)).toBeLessThan(1e-6)
      // The changed positions do change, so the comparison above is not vacuous.
      expect(Math.max(...la[t + 1]!.map((x, v) => Math.abs(x - lb[t + 1]![v]!)))).toBeGreaterThan(1e-4)
    }
  })

  it("memorises a short fixed sequence", () => {
    const m = compile(base({ vocab: 32, width: 32, heads: 4, layers: 2, context: 16, activation: "gelu" }))
    const p = m.init(1)
    const seq16 = Array.from({ length: 17 }, (_, i) => (i * 7 + 3) % 32)
    const batch = { tokens: tf.tensor2d([seq16], [1, 17], "int32"), mask: tf.ones([1, 16]) as tf.Tensor2D }
    const opt = tf.train.adam(3e-3)
    let last = Infinity
    for (let s = 0; s < 300 && last >= 0.05; s++) {
      const l = opt.minimize(() => m.loss(p, batch), true, Object.values(p))!
      last = l.dataSync()[0]!
      l.dispose()
    }
    expect(last).toBeLessThan(0.05)
  })

  it("same seed gives byte-identical parameters, another seed different ones", () => {
    const m = compile(base({ vocab: 40, width: 16, heads: 2, layers: 2, context: 8 }))
    const a = initValues(m.table, 42)
    const b = initValues(m.table, 42)
    const c = initValues(m.table, 43)
    for (const [k, v] of a) expect(Buffer.from(v.buffer).equals(Buffer.from(b.get(k)!.buffer))).toBe(true)
    expect(Buffer.from(a.get("embed.tokens")!.buffer).equals(Buffer.from(c.get("embed.tokens")!.buffer))).toBe(false)
  })

  it("keeps the tensor count flat over many forward/backward passes", () => {
    const m = compile(base({ vocab: 20, width: 16, heads: 2, layers: 2, context: 8 }))
    const p = m.init(2)
    const batch = { tokens: tf.tensor2d([[1, 2, 3, 4, 5, 6, 7, 8, 9]], [1, 9], "int32"), mask: tf.ones([1, 8]) as tf.Tensor2D }
    const step = () => {
      const { value, grads } = tf.variableGrads(() => m.loss(p, batch, { training: true }))
      tf.dispose([value, ...Object.values(grads)])
    }
    step()
    const before = tf.memory().numTensors
    for (let i = 0; i < 50; i++) step()
    expect(tf.memory().numTensors).toBe(before)
  })
})
