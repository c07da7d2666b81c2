import * as tf from "@tensorflow/tfjs"
import { beforeAll, describe, expect, it } from "vitest"
import { attention, block, decoder, depth, ffn, norm, posenc, stack, type DecoderSpec } from "../../dsl/index.js"
import { paramCounts, flopsPerToken } from "../../dsl/params.js"
import { compile } from "../../src/model/index.js"
import { materialise } from "../../src/prune/materialise.js"
import { heads } from "../../src/experiment/prune/methods/heads.js"
import { attentionUnits, ffnUnits } from "../../src/experiment/prune/units.js"
import { Rng } from "../../src/random/rng.js"
import type { TensorArrays } from "../../src/train/checkpoint.js"

/**
 * Structured pruning made real: the smaller model, with weights sliced from the source's,
 * computes the same logits as the source with the removed heads' and neurons' rows of the
 * output projections set to zero, for every attention kind whose heads can be removed.
 */
beforeAll(async () => {
  await tf.setBackend("cpu")
})

const width = 24
const context = 16
const models: Array<[string, DecoderSpec]> = [
  [
    "full attention, RoPE, GELU",
    decoder({ vocab: 13, width, context, posenc: posenc("rope"), layers: depth(2, block({ attention: attention("full", { heads: 3 }), ffn: ffn("gelu", { mult: 2 }), norm: norm("layer") })) }),
  ],
  [
    "sliding window with a dilation per head, Longformer with global rows, SwiGLU",
    decoder({
      vocab: 13,
      width,
      context,
      posenc: posenc("rope"),
      layers: stack([
        block({ attention: attention("sliding-window", { heads: 3, window: 3, dilation: [1, 2, 3] }), ffn: ffn("swiglu", { hidden: 20 }), norm: norm("rms") }),
        block({ attention: attention("longformer", { heads: 3, window: 3, global: [0, 5] }), ffn: ffn("relu", { hidden: 30 }), norm: norm("layer") }),
      ]),
    }),
  ],
  [
    "sparse strided (merged) and fixed (alternate), learned positions",
    decoder({
      vocab: 13,
      width,
      context,
      layers: stack([
        block({ attention: attention("sparse-strided", { heads: 3, stride: 4 }), ffn: ffn("gelu", { mult: 2 }), norm: norm("layer") }),
        block({ attention: attention("sparse-fixed", { heads: 3, stride: 4, summary: 2, combine: "alternate" }), ffn: ffn("gelu", { mult: 2 }), norm: norm("layer") }),
      ]),
    }),
  ],
  [
    "causal Linformer with E, F per head and per layer",
    decoder({
      vocab: 13,
      width,
      context,
      posenc: posenc("none"),
      layers: stack([
        block({ attention: attention("linformer-causal", { heads: 3, k: 4, block: 4, sharing: "none" }), ffn: ffn("gelu", { mult: 2 }), norm: norm("layer") }),
        block({ attention: attention("linformer-causal", { heads: 3, k: 4, block: 4, sharing: "headwise" }), ffn: ffn("gelu", { mult: 2 }), norm: norm("layer") }),
      ]),
    }),
  ],
]

/** Every parameter random, biases and gains included, so every slice matters. */
const randomWeights = (spec: DecoderSpec, seed: number): TensorArrays => {
  const rng = Rng.fromSeed(seed)
  return Object.fromEntries(
    compile(spec).table.map((p) => {
      const n = p.decl.shape.reduce((a, b) => a * b, 1)
      return [p.name, { shape: p.decl.shape, data: Float32Array.from({ length: n }, () => (p.decl.init.kind === "ones" ? 1 : 0) + 0.3 * rng.nextNormal()) }]
    }),
  )
}

/** The source's weights with rows of `weight` zeroed: [from, to) of each removed unit. */
const zeroRows = (w: TensorArrays, weight: string, rows: ReadonlyArray<[number, number]>): TensorArrays => {
  const t = w[weight]!
  const cols = t.shape[1]!
  const data = t.data.slice()
  for (const [from, to] of rows) data.fill(0, from * cols, to * cols)
  return { ...w, [weight]: { shape: t.shape, data } }
}

const logits = (spec: DecoderSpec, w: TensorArrays): Float32Array => {
  const m = compile(spec)
  const params = Object.fromEntries(
    m.table.map((p) => {
      expect(w[p.name]?.shape, p.name).toEqual(p.decl.shape)
      return [p.name, tf.tensor(w[p.name]!.data, [...p.decl.shape])]
    }),
  )
  const tokens = tf.tensor2d(Array.from({ length: 2 * context }, (_, i) => (i * 7 + 3) % 13), [2, context], "int32")
  const values = tf.tidy(() => m.apply(params, tokens).dataSync() as Float32Array)
  tf.dispose([tokens, ...Object.values(params)])
  return values
}

const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]!)), 0)

describe("materialised structured pruning", () => {
  it.each(models)("%s: the smaller model's logits equal the masked model's (1e-5)", (_name, spec) => {
    const source = randomWeights(spec, 5)
    const attn = attentionUnits(spec)
    const ffns = ffnUnits(spec)
    // Block 0 loses head 1; block 1 heads 0 and 2. Each FFN loses every third neuron and its first.
    const removedHeads = [[1], [0, 2]]
    const keptHeads = new Map(attn.map((u, i) => [u.prefix, [0, 1, 2].filter((h) => !removedHeads[i]!.includes(h))]))
    const hidden = ffns.map((u) => source[`${u.prefix}.w_out`]!.shape[0]!)
    const removedNeurons = hidden.map((n) => Array.from({ length: n }, (_, j) => j).filter((j) => j % 3 === 2 || j === 0))
    const keptNeurons = new Map(ffns.map((u, i) => [u.prefix, Array.from({ length: hidden[i]! }, (_, j) => j).filter((j) => !removedNeurons[i]!.includes(j))]))

    let masked = source
    attn.forEach((u, i) => (masked = zeroRows(masked, `${u.prefix}.wo`, removedHeads[i]!.map((h) => [h * 8, (h + 1) * 8]))))
    ffns.forEach((u, i) => (masked = zeroRows(masked, `${u.prefix}.w_out`, removedNeurons[i]!.map((j) => [j, j + 1]))))
    const small = materialise(spec, source, { heads: keptHeads, neurons: keptNeurons })

    const before = tf.memory().numTensors
    const want = logits(spec, masked)
    expect(maxDiff(logits(small.model, small.params), want)).toBeLessThan(1e-5)
    // Not vacuous: removing them changed the logits.
    expect(maxDiff(logits(spec, source), want)).toBeGreaterThan(1e-2)
    expect(tf.memory().numTensors).toBe(before)

    // Fewer heads at the same, explicit head size; narrower FFNs.
    expect(attentionUnits(small.model).map((u) => [u.spec.heads, u.spec.headDim])).toEqual([
      [2, 8],
      [1, 8],
    ])
    expect(ffnUnits(small.model).map((u) => u.spec.hidden)).toEqual(keptNeurons.size ? [...keptNeurons.values()].map((k) => k.length) : [])
    // The counts of the smaller spec are the sliced arrays' sizes.
    const size = (w: TensorArrays) => Object.values(w).reduce((s, t) => s + t.data.length, 0)
    expect(paramCounts(spec).total - paramCounts(small.model).total).toBe(size(source) - size(small.params))
  })

  it("parameters and FLOPs drop by what the removed heads and neurons held and computed", () => {
    const spec = models[0]![1]
    const small = materialise(spec, randomWeights(spec, 1), {
      heads: new Map([["blocks.0.0.attention", [0]], ["blocks.1.0.attention", [0, 1]]]),
      neurons: new Map([["blocks.0.1.ffn", Array.from({ length: 40 }, (_, j) => j)]]),
    })
    // Per head of size 8: Q, K, V columns and biases and O rows, 4·24·8 + 3·8 = 792 parameters;
    // per neuron: its column and bias of w_in and row of w_out, 2·24 + 1 = 49.
    const heads = 3
    const neurons = 48 - 40
    expect(paramCounts(spec).nonEmbedding - paramCounts(small.model).nonEmbedding).toBe(heads * 792 + neurons * 49)
    // 2 FLOPs per matrix weight, and QKᵀ and AV over the context: 4·16·8 per head.
    expect(flopsPerToken(spec).forward - flopsPerToken(small.model).forward).toBe(2 * (heads * 4 * 24 * 8 + neurons * 2 * 24) + heads * 4 * 16 * 8)
  })

  it("refuses head pruning where the remaining heads would compute something else, saying why", () => {
    const withPosenc = (kind: "t5" | "alibi") =>
      decoder({ vocab: 13, width, context, posenc: kind === "t5" ? posenc("t5", { heads: 3 }) : posenc(kind), layers: depth(2, block({ attention: attention("full", { heads: 3 }), ffn: ffn("gelu") })) })
    const check = (spec: DecoderSpec) => heads.check(heads.make({ remove: 0.25 }), spec, false).map((i) => i.message)
    expect(check(withPosenc("t5"))).toEqual([expect.stringMatching(/refuses posenc t5: T5's bias table is shared by all layers and a block with h heads reads its first h columns/)])
    expect(check(withPosenc("alibi"))).toEqual([expect.stringMatching(/refuses posenc alibi: ALiBi's slopes follow a block's head count/)])
    const split = decoder({ vocab: 13, width, context, layers: depth(1, block({ attention: attention("sparse-strided", { heads: 4, stride: 4, combine: "split" }), ffn: ffn("gelu") })) })
    expect(check(split)).toEqual([expect.stringMatching(/blocks\.0\.0\.attention \(sparse-strided, combine "split"\).*the split would move/)])
    expect(check(models[1]![1])).toEqual([])
  })
})
