import * as tf from "@tensorflow/tfjs"
import { beforeAll, describe, expect, it, vi } from "vitest"
import {
  attention, block, decoder, depthCosts, earlyExit, ffn, keepBlocks, keptParamSource, layerDrop, mixtureOfDepths, stack, withPolicy,
  type BlockSpec, type DecoderSpec, type DepthPolicy,
} from "../../dsl/index.js"
import { layerDropPolicy } from "../../dsl/kinds/depth/layer-drop.js"
import { routingFlops } from "../../dsl/kinds/depth/mixture-of-depths.js"
import { dimsOf } from "../../dsl/nodes.js"
import { earlyExit as earlyExitCompute } from "../../src/depth/early-exit.js"
import { dropped } from "../../src/depth/layer-drop.js"
import { DepthTrace } from "../../src/depth/trace.js"
import { evaluate } from "../../src/eval/evaluate.js"
import { generate } from "../../src/eval/generate.js"
import { compile, DecodeCache, initValues, type Model } from "../../src/model/index.js"
import { Rng } from "../../src/random/rng.js"
import { withReference } from "./early-exit-reference.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

/**
 * The depth policies computed: against the plain decoder, against recomputation without a
 * cache, against later tokens, and against a count of the work the kernels actually did.
 */
const vocab = 23
// Blocks of different sizes (heads, head size, FFN width), so each block's matmuls can be told apart in a profile.
const inner = [6, 12, 14, 10]
const hidden = [40, 24, 56, 36]
const blocks: BlockSpec[] = [
  block({ attention: attention("full", { heads: 2, headDim: 3 }), ffn: ffn("gelu", { hidden: 40, dropout: 0.1 }), dropout: 0.1 }),
  block({ attention: attention("full", { heads: 3, headDim: 4 }), ffn: ffn("relu", { hidden: 24 }) }),
  block({ attention: attention("sliding-window", { heads: 2, headDim: 7, window: 4 }), ffn: ffn("gelu", { hidden: 56 }) }),
  block({ attention: attention("full", { heads: 1, headDim: 10 }), ffn: ffn("swish", { hidden: 36 }) }),
]
const model = (policy?: DepthPolicy, layers: ReadonlyArray<BlockSpec> = blocks): DecoderSpec =>
  decoder({ vocab, width: 16, context: 12, tied: false, dropout: 0.1, layers: stack(layers, policy) })

/** Parameters with weights ten times the initial scale, so blocks change the hidden state a lot and confidences spread. */
const paramsOf = (m: Model, seed: number, scale = 1, set: Record<string, number> = {}) => {
  const values = initValues(m.table, seed)
  for (const [name, v] of values) for (let i = 0; i < v.length; i++) v[i] = name in set ? set[name]! : v[i]! * scale
  return Object.fromEntries(m.table.map((p) => [p.name, tf.tensor(values.get(p.name)!, [...p.decl.shape])]))
}
const seqs = [
  [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9],
  [2, 7, 1, 8, 2, 8, 1, 8, 2, 8, 4, 5, 9],
]
const batchOf = (rows: number[][]) => ({ tokens: tf.tensor2d(rows, [rows.length, rows[0]!.length], "int32"), mask: tf.ones([rows.length, rows[0]!.length - 1]) as tf.Tensor2D })
/** Positions that ran each block in full. */
const ran = (trace: DepthTrace): number[] => blocks.map((_, i) => trace.ran[i] ?? 0)
const bits = (t: tf.Tensor): Buffer => Buffer.from((t.dataSync() as Float32Array).buffer)
const logitsOf = (m: Model, params: Record<string, tf.Tensor>, rows: number[][], options: Parameters<Model["apply"]>[2] = {}) =>
  tf.tidy(() => m.apply(params, tf.tensor2d(rows, [rows.length, rows[0]!.length], "int32"), options).arraySync())

describe("a disabled policy is the plain decoder, bit for bit", () => {
  const disabled: Array<[string, DepthPolicy]> = [
    ["layer-drop at rate 0", layerDrop({ rate: 0 })],
    ["early exit by softmax at threshold 1", earlyExit({ threshold: 1 })],
    ["early exit by saturation at threshold 1, heads per block", earlyExit({ measure: "saturation", threshold: 1, heads: "per-block" })],
    ["mixture-of-depths at capacity 1", mixtureOfDepths({ capacity: 1, every: 1 })],
  ]
  it.each(disabled)("%s: logits, training loss and gradients", (_name, policy) => {
    const plain = compile(model())
    const dynamic = compile(model(policy))
    const params = paramsOf(dynamic, 5)
    const before = tf.memory().numTensors
    for (const rows of [seqs.map((r) => r.slice(0, 12)), [seqs[0]!.slice(0, 5)]]) {
      const a = tf.tidy(() => plain.apply(params, tf.tensor2d(rows, [rows.length, rows[0]!.length], "int32")))
      const b = tf.tidy(() => dynamic.apply(params, tf.tensor2d(rows, [rows.length, rows[0]!.length], "int32")))
      expect(bits(b).equals(bits(a))).toBe(true)
      tf.dispose([a, b])
    }
    // Training: dropout masks drawn from the same seed; early exit's objective is its own (checked below), so only the others here.
    if (policy.kind !== "early-exit") {
      const batch = batchOf(seqs)
      const names = plain.table.map((p) => p.name)
      const grad = (m: Model) => tf.valueAndGrads((...ts: tf.Tensor[]) => m.loss({ ...params, ...Object.fromEntries(names.map((n, i) => [n, ts[i]!])) }, batch, { training: true, dropoutSeed: 77 }))(names.map((n) => params[n]!))
      const p = grad(plain)
      const d = grad(dynamic)
      expect(bits(d.value).equals(bits(p.value))).toBe(true)
      d.grads.forEach((g, i) => expect(bits(g).equals(bits(p.grads[i]!))).toBe(true))
      tf.dispose([p.value, d.value, ...p.grads, ...d.grads, batch.tokens, batch.mask])
    }
    expect(tf.memory().numTensors).toBe(before)
    tf.dispose(Object.values(params))
  })
})

describe("LayerDrop", () => {
  it("in training runs only the blocks its seeded draw keeps: the plain decoder of those blocks, dropout masks and all", () => {
    const policy = layerDropPolicy.make({ rate: 0.5 })
    const m = compile(model(policy))
    const params = paramsOf(m, 2)
    const costs = depthCosts(m.spec)
    const batch = batchOf(seqs)
    const patterns = new Set<string>()
    for (const seed of [11, 12, 13, 14, 15, 16]) {
      const kept = [0, 1, 2, 3].filter((i) => !dropped(policy, seed, i))
      patterns.add(kept.join(","))
      const trace = new DepthTrace()
      const loss = tf.tidy(() => bits(m.loss(params, batch, { training: true, dropoutSeed: seed, trace })))
      expect(ran(trace)).toEqual([0, 1, 2, 3].map((i) => (kept.includes(i) ? 24 : 0)))
      expect(trace.flops).toBe(24 * (costs.base + costs.head + kept.reduce((s, i) => s + costs.blocks[i]!.full, 0)))
      if (kept.length === 0) continue
      const shallow = compile(keepBlocks(m.spec, kept))
      const source = keptParamSource(m.spec, kept)
      const renamed = Object.fromEntries(shallow.table.map((p) => [p.name, params[source(p.name)]!]))
      expect(tf.tidy(() => bits(shallow.loss(renamed, batch, { training: true, dropoutSeed: seed }))).equals(loss)).toBe(true)
    }
    // The draws differ from step to step (not one fixed pattern, not always every block).
    expect(patterns.size).toBeGreaterThan(2)
    const trace = new DepthTrace()
    tf.tidy(() => m.loss(params, batch, { trace }))
    expect(ran(trace)).toEqual([24, 24, 24, 24])
    tf.dispose([batch.tokens, batch.mask, ...Object.values(params)])
  })
})

/** The first threshold at which the sequences' tokens leave after at least three different blocks. */
const mixedThreshold = (m: Model, params: Record<string, tf.Tensor>, candidates: ReadonlyArray<number>): number => {
  const policy = m.spec.layers.policy!
  const found = candidates.find((threshold) => {
    const trace = new DepthTrace()
    logitsOf(compile(withPolicy(m.spec, { ...policy, threshold } as DepthPolicy)), params, seqs.map((r) => r.slice(0, 12)), { trace })
    return new Set(trace.exits.flat()).size >= 3
  })
  if (found === undefined) throw new Error("no candidate threshold mixes the exits")
  return found
}
const exitCases: Array<[string, "softmax" | "saturation", "shared" | "per-block", number[]]> = [
  ["softmax, shared head", "softmax", "shared", [0.5, 0.4, 0.3, 0.2, 0.1]],
  ["saturation, heads per block", "saturation", "per-block", [0.9, 0.85, 0.8, 0.7, 0.6]],
  ["saturation, shared head", "saturation", "shared", [0.9, 0.85, 0.8, 0.7, 0.6]],
]
/** An early-exit model over weights five times the initial scale (confidences spread), at a threshold that mixes exits. */
const exitModel = (measure: "softmax" | "saturation", heads: "shared" | "per-block", candidates: number[]) => {
  const probe = compile(model(earlyExit({ measure, heads, threshold: 1 })))
  const params = paramsOf(probe, 5, 5)
  const threshold = mixedThreshold(probe, params, candidates)
  return { m: compile(withPolicy(probe.spec, earlyExit({ measure, heads, threshold }))), params }
}

describe("early exit", () => {
  it("trains on every block's exit weighted 1…n: the weighted mean of the losses of the plain decoder cut after each block", () => {
    const m = compile(model(earlyExit({ heads: "per-block" })))
    const params = paramsOf(m, 3)
    const batch = batchOf(seqs)
    const loss = tf.tidy(() => m.loss(params, batch, { training: true, dropoutSeed: 9 }).dataSync()[0]!)
    // Exit i is the plain decoder of blocks 0…i, its LM head replaced by block i's exit head (the last block keeps the LM head).
    const cut = [0, 1, 2, 3].map((i) => {
      const kept = Array.from({ length: i + 1 }, (_, j) => j)
      const shallow = compile(keepBlocks(m.spec, kept))
      const source = keptParamSource(m.spec, kept)
      const renamed = Object.fromEntries(shallow.table.map((p) => [p.name, params[p.name === "head.weight" && i < 3 ? `blocks.${i}.exit.weight` : source(p.name)]!]))
      return tf.tidy(() => shallow.loss(renamed, batch, { training: true, dropoutSeed: 9 }).dataSync()[0]!)
    })
    expect(loss).toBeCloseTo(cut.reduce((s, l, i) => s + (i + 1) * l, 0) / 10, 5)
    tf.dispose([batch.tokens, batch.mask, ...Object.values(params)])
  })

  it.each(exitCases)("%s: generation with the KV cache equals recomputation without it, applying the same exits", (_name, measure, heads, candidates) => {
    const { m, params } = exitModel(measure, heads, candidates)
    const before = tf.memory().numTensors
    const seq = seqs[0]!.slice(0, 12)
    const cache = new DecodeCache()
    const cached = new DepthTrace()
    const steps = [...logitsOf(m, params, [seq.slice(0, 4)], { cache, trace: cached })[0]!]
    for (let t = 4; t < seq.length; t++) steps.push(logitsOf(m, params, [[seq[t]!]], { cache, trace: cached })[0]![0]!)
    cache.dispose()
    expect(new Set(cached.exits[0]).size).toBeGreaterThan(1)
    expect(cached.blocksPerToken).toBeLessThan(4)
    const replayed = new DepthTrace({ exits: cached.exits })
    const full = logitsOf(m, params, [seq], { trace: replayed })[0]!
    expect(replayed.exits).toEqual(cached.exits)
    for (let t = 0; t < seq.length; t++) for (let v = 0; v < vocab; v++) expect(steps[t]![v]!).toBeCloseTo(full[t]![v]!, 4)

    // generate(): greedy tokens with the cache equal greedy decoding that recomputes the whole sequence with the same exits.
    const traced = new DepthTrace()
    const out = generate(m, params, [1, 2, 3], { tokens: 8, temperature: 0, trace: traced }, Rng.fromSeed(1))
    const ids = [1, 2, 3, ...out]
    const again = logitsOf(m, params, [ids.slice(0, 11)], { trace: new DepthTrace({ exits: traced.exits }) })[0]!
    expect(out).toEqual(again.slice(2, 10).map((row) => row.indexOf(Math.max(...row))))
    expect(tf.memory().numTensors).toBe(before)
    tf.dispose(Object.values(params))
  })
})

/**
 * Exits imposed on the first 12 positions of seqs: sequence 0 runs past block 0 at scattered
 * positions up to position 6, and nowhere past block 2; sequence 1 runs positions 0–2 to the
 * end and position 8 through block 1. Without a cache, block i computes keys and values for
 * the sequences that still run it, up to their last running position: 24, 2 × 9, 2 × 5 and
 * 1 × 3 positions (the last: sequence 1 alone, every position running).
 */
const imposed = [
  [2, 0, 1, 2, 2, 0, 1, 0, 0, 0, 0, 0],
  [3, 3, 3, 0, 0, 0, 0, 0, 1, 0, 0, 0],
]

describe("early exit in evaluation, against the naive reference (every position through every block's prefix)", () => {
  const reference = withReference
  const cases = exitCases.flatMap(([name, ...rest]) => [
    [`${name}, its own exits`, ...rest, false],
    [`${name}, imposed exits`, ...rest, true],
  ]) as Array<[string, "softmax" | "saturation", "shared" | "per-block", number[], boolean]>
  it.each(cases)("%s: the same logits, exits and blocks, no more FLOPs, no tensor left", (_name, measure, heads, candidates, impose) => {
    const { m, params } = exitModel(measure, heads, candidates)
    const rows = seqs.map((r) => r.slice(0, 12))
    const before = tf.memory().numTensors
    const fast = new DepthTrace(impose ? { exits: imposed } : {})
    const slow = new DepthTrace(impose ? { exits: imposed } : {})
    const got = logitsOf(m, params, rows, { trace: fast })
    const want = reference(() => logitsOf(m, params, rows, { trace: slow }))
    expect(tf.memory().numTensors).toBe(before)
    const scale = Math.max(...want.flat(2).map(Math.abs))
    want.forEach((seq, s) => seq.forEach((row, p) => row.forEach((x, v) => expect(Math.abs(got[s]![p]![v]! - x)).toBeLessThanOrEqual(1e-5 * scale))))
    expect(fast.exits).toEqual(slow.exits)
    if (impose) expect(fast.exits).toEqual(imposed)
    else expect(new Set(fast.exits.flat()).size).toBeGreaterThan(1)
    expect(fast.ran).toEqual(slow.ran)
    expect(fast.tokens).toBe(slow.tokens)
    // Positions after their sequence's last running one skip the later blocks' prefixes.
    if (impose) expect(fast.flops).toBeLessThan(slow.flops)
    else expect(fast.flops).toBeLessThanOrEqual(slow.flops)
    // npm run eval's computation: the same loss and blocks per token.
    const batches = [{ batch: 2, context: 11, tokens: Int32Array.from(rows.flat()), mask: new Float32Array(22).fill(1) }]
    const a = evaluate(m, params, batches, 1)
    const b = reference(() => evaluate(m, params, batches, 1))
    expect(Math.abs(a.loss - b.loss)).toBeLessThanOrEqual(1e-5 * b.loss)
    expect(a.blocksPerToken).toBe(b.blocksPerToken)
    expect(a.flopsPerToken).toBeLessThanOrEqual(b.flopsPerToken)
    expect(tf.memory().numTensors).toBe(before)
    tf.dispose(Object.values(params))
  })

  it("saturation with the shared head: the LM head runs once, over every position, as in the plain decoder", () => {
    const { m, params } = exitModel("saturation", "shared", [0.9, 0.85, 0.8, 0.7, 0.6])
    const rows = seqs.map((r) => r.slice(0, 12))
    const forward = earlyExitCompute.forward
    const heads: number[] = []
    const spy = vi.spyOn(earlyExitCompute, "forward").mockImplementation((policy, x, ctx) =>
      forward(policy, x, { ...ctx, lmHead: (h) => (heads.push(h.shape[0]), ctx.lmHead(h)) }),
    )
    const trace = new DepthTrace()
    try {
      logitsOf(m, params, rows, { trace })
    } finally {
      spy.mockRestore()
    }
    expect(new Set(trace.exits.flat()).size).toBeGreaterThan(1)
    expect(heads).toEqual([24])
    tf.dispose(Object.values(params))
  })

  it("softmax measure: per block only the exit head and its softmax make tensors of the vocabulary's width (the margin is one pass over the probabilities)", async () => {
    const { m, params } = exitModel("softmax", "per-block", [0.5, 0.4, 0.3, 0.2, 0.1])
    const trace = new DepthTrace({ exits: imposed })
    const info = await tf.profile(() => {
      logitsOf(m, params, seqs.map((r) => r.slice(0, 12)), { trace })
    })
    const wide = info.kernels.filter((k) => k.outputShapes[0]?.length === 2 && k.outputShapes[0][1] === vocab).map((k) => k.name)
    // Heads after blocks 0-2 and the last; the softmaxes after blocks 0-2; the leaving rows gathered, and all put back in order.
    expect(wide.filter((name) => name === "Softmax")).toHaveLength(3)
    expect([...new Set(wide)].sort()).toEqual(["BatchMatMul", "Concat", "GatherV2", "Softmax"])
    tf.dispose(Object.values(params))
  })

  it("a non-causal model (Linformer, whose outputs mix later positions) still computes every position's keys and values", () => {
    const linformer = [...blocks.slice(0, 3), block({ attention: attention("linformer", { heads: 1, headDim: 10, k: 4 }), ffn: ffn("swish", { hidden: 36 }) })]
    const spec = decoder({ vocab, width: 16, context: 12, tied: false, layers: stack(linformer, earlyExit({ measure: "saturation", threshold: 1 })), allowNonCausal: true })
    const m = compile(spec)
    const params = paramsOf(m, 5, 5)
    const rows = seqs.map((r) => r.slice(0, 12))
    const fast = new DepthTrace({ exits: imposed })
    const slow = new DepthTrace({ exits: imposed })
    const got = logitsOf(m, params, rows, { trace: fast })
    const want = reference(() => logitsOf(m, params, rows, { trace: slow }))
    const scale = Math.max(...want.flat(2).map(Math.abs))
    want.forEach((seq, s) => seq.forEach((row, p) => row.forEach((x, v) => expect(Math.abs(got[s]![p]![v]! - x)).toBeLessThanOrEqual(1e-5 * scale))))
    // Every position through every later block, as the reference; but the 15 that left after block 0 compute only keys and values in block 1, the only later one with full attention.
    const costs = depthCosts(spec)
    expect(costs.blocks.map((c) => c.keyValues !== undefined)).toEqual([true, true, false, false])
    expect(fast.flops).toBe(slow.flops - 15 * (costs.blocks[1]!.prefix - costs.blocks[1]!.keyValues!))
    tf.dispose(Object.values(params))
  })
})

describe("mixture-of-depths", () => {
  const routedModel = (set: Record<string, number> = {}) => {
    const m = compile(model(mixtureOfDepths({ capacity: 0.5, every: 2, predictor: 8 })))
    return { m, params: paramsOf(m, 4, 1, set) }
  }

  it("skips a routed block its predictor sends no token to: the plain decoder of the other blocks", () => {
    const { m, params } = routedModel({ "blocks.1.predictor.b2": -1e3, "blocks.3.predictor.b2": -1e3 })
    const trace = new DepthTrace()
    const rows = seqs.map((r) => r.slice(0, 12))
    const got = tf.tidy(() => bits(m.apply(params, tf.tensor2d(rows, [2, 12], "int32"), { trace })))
    const shallow = compile(keepBlocks(m.spec, [0, 2]))
    const source = keptParamSource(m.spec, [0, 2])
    const renamed = Object.fromEntries(shallow.table.map((p) => [p.name, params[source(p.name)]!]))
    expect(tf.tidy(() => bits(shallow.apply(renamed, tf.tensor2d(rows, [2, 12], "int32")))).equals(got)).toBe(true)
    expect(ran(trace)).toEqual([24, 0, 24, 0])
    tf.dispose(Object.values(params))
  })

  it("trains each routed block on the top ⌈capacity·T⌉ positions of every row", () => {
    const { m, params } = routedModel()
    const trace = new DepthTrace()
    const batch = batchOf(seqs)
    tf.tidy(() => m.loss(params, batch, { training: true, dropoutSeed: 3, trace }))
    expect(ran(trace)).toEqual([24, 12, 24, 12])
    tf.dispose([batch.tokens, batch.mask, ...Object.values(params)])
  })

  it("generation with the cache equals recomputation without it (the routed blocks' own positions)", () => {
    const { m, params } = routedModel()
    const seq = seqs[1]!.slice(0, 12)
    const cache = new DecodeCache()
    const trace = new DepthTrace()
    const steps = [...logitsOf(m, params, [seq.slice(0, 5)], { cache, trace })[0]!]
    for (let t = 5; t < seq.length; t++) steps.push(logitsOf(m, params, [[seq[t]!]], { cache, trace })[0]![0]!)
    cache.dispose()
    const full = logitsOf(m, params, [seq])[0]!
    for (let t = 0; t < seq.length; t++) for (let v = 0; v < vocab; v++) expect(steps[t]![v]!).toBeCloseTo(full[t]![v]!, 4)
    // Some positions skipped a routed block and some went through, so the comparison covers both.
    expect(ran(trace)[1]).toBeGreaterThan(0)
    expect(ran(trace)[1]).toBeLessThan(12)
    tf.dispose(Object.values(params))
  })
})

describe("causality on the evaluation path: later tokens never change earlier logits or decisions", () => {
  const cases: Array<[string, () => { m: Model; params: Record<string, tf.Tensor> }]> = [
    ["layer-drop", () => { const m = compile(model(layerDrop({ rate: 0.5 }))); return { m, params: paramsOf(m, 6) } }],
    ...exitCases.map(([name, measure, heads, candidates]): [string, () => { m: Model; params: Record<string, tf.Tensor> }] => [`early exit (${name})`, () => exitModel(measure, heads, candidates)]),
    ["mixture-of-depths (predictor)", () => { const m = compile(model(mixtureOfDepths({ capacity: 0.25, every: 1, predictor: 8 }))); return { m, params: paramsOf(m, 8) } }],
  ]
  it.each(cases)("%s", (_name, make) => {
    const { m, params } = make()
    const a = seqs[0]!.slice(0, 12)
    for (const t of [0, 4, 9]) {
      const b = a.map((x, i) => (i > t ? (x + 7) % vocab : x))
      const ta = new DepthTrace()
      const tb = new DepthTrace()
      const la = logitsOf(m, params, [a], { trace: ta })[0]!
      const lb = logitsOf(m, params, [b], { trace: tb })[0]!
      for (let s = 0; s <= t; s++) for (let v = 0; v < vocab; v++) expect(Math.abs(la[s]![v]! - lb[s]![v]!)).toBeLessThan(1e-6)
      expect(ta.exits.map((e) => e.slice(0, t + 1))).toEqual(tb.exits.map((e) => e.slice(0, t + 1)))
      expect(Math.max(...la[t + 1]!.map((x, v) => Math.abs(x - lb[t + 1]![v]!)))).toBeGreaterThan(1e-4)
    }
    tf.dispose(Object.values(params))
  })

  it("the test above can fail: mixture-of-depths' training path (top-k over the sequence) is not causal", () => {
    const m = compile(model(mixtureOfDepths({ capacity: 0.25, every: 1, predictor: 8 })))
    const params = paramsOf(m, 8)
    const a = seqs[0]!.slice(0, 12)
    const changed = [6, 8, 10].some((t) => {
      const b = a.map((x, i) => (i > t ? (x + 7) % vocab : x))
      const la = logitsOf(m, params, [a], { training: true })[0]!
      const lb = logitsOf(m, params, [b], { training: true })[0]!
      return la.slice(0, t + 1).some((row, s) => row.some((x, v) => Math.abs(x - lb[s]![v]!) > 1e-4))
    })
    expect(changed).toBe(true)
    tf.dispose(Object.values(params))
  })
})

describe("the FLOPs a trace counts, against the matmuls the kernels ran", () => {
  /** Rows multiplied by each weight shape ("16x40": a block's FFN input matrix), from a profile of `f`. */
  const matmulRows = async (f: () => void): Promise<Map<string, number>> => {
    const info = await tf.profile(() => {
      tf.tidy(f)
    })
    const rows = new Map<string, number>()
    for (const k of info.kernels) {
      const [x, w] = k.inputShapes as number[][]
      if (k.name === "BatchMatMul" && x?.length === 2 && w?.length === 2) rows.set(w.join("x"), (rows.get(w.join("x")) ?? 0) + x[0]!)
    }
    return rows
  }
  /**
   * FLOPs from the rows each part ran: block i's key/value rows (wk and wv; wq and wo ran on
   * the query rows) its keys and values, the query rows the rest of its attention part, the
   * FFN rows the FFN. Blocks without a key/value split run every attention row in full.
   */
  const keyValueRows = (rows: Map<string, number>) => inner.map((w) => ((rows.get(`16x${w}`) ?? 0) - (rows.get(`${w}x16`) ?? 0)) / 2)
  const expected = (spec: DecoderSpec, rows: Map<string, number>, tokens: number) => {
    const costs = depthCosts(spec)
    const at = (shape: string) => rows.get(shape) ?? 0
    const ffnRows = hidden.map((h) => at(`16x${h}`))
    const kvRows = keyValueRows(rows)
    const flops =
      tokens * costs.base +
      costs.blocks.reduce((s, c, i) => {
        const kv = c.keyValues ?? c.prefix
        return s + kvRows[i]! * kv + at(`${inner[i]}x16`) * (c.prefix - kv) + ffnRows[i]! * (c.full - c.prefix)
      }, 0) +
      at(`16x${vocab}`) * costs.head +
      (spec.layers.policy?.kind === "mixture-of-depths" ? at("16x1") * routingFlops(spec.layers.policy, dimsOf(spec)) : 0)
    return { flops, ffnRows }
  }
  const rows12 = seqs.map((r) => r.slice(0, 12))

  it("LayerDrop in training", async () => {
    const m = compile(model(layerDrop({ rate: 0.5 })))
    const params = paramsOf(m, 2)
    const batch = batchOf(seqs)
    for (const seed of [11, 13]) {
      const trace = new DepthTrace()
      const rows = await matmulRows(() => void m.loss(params, batch, { training: true, dropoutSeed: seed, trace }))
      const want = expected(m.spec, rows, 24)
      expect(trace.flops).toBe(want.flops)
      expect(ran(trace)).toEqual(want.ffnRows)
    }
    tf.dispose([batch.tokens, batch.mask, ...Object.values(params)])
  })

  it.each(exitCases)("early exit (%s), in evaluation and in cached generation", async (_name, measure, heads, candidates) => {
    const { m, params } = exitModel(measure, heads, candidates)
    const trace = new DepthTrace()
    const want = expected(m.spec, await matmulRows(() => void m.apply(params, tf.tensor2d(rows12, [2, 12], "int32"), { trace })), 24)
    expect(trace.flops).toBe(want.flops)
    expect(ran(trace)).toEqual(want.ffnRows)
    expect(trace.flops).toBeLessThan(24 * m.flops.forward)
    // One token at a time: a token that left runs only the attention part of the later blocks.
    const cache = new DecodeCache()
    const cached = new DepthTrace()
    let rows = new Map<string, number>()
    for (const [i, id] of rows12[0]!.entries()) {
      const step = await matmulRows(() => void m.apply(params, tf.tensor2d([[id]], [1, 1], "int32"), { cache, trace: cached }))
      rows = i === 0 ? step : new Map([...new Set([...rows.keys(), ...step.keys()])].map((k) => [k, (rows.get(k) ?? 0) + (step.get(k) ?? 0)]))
    }
    cache.dispose()
    const wantCached = expected(m.spec, rows, 12)
    expect(cached.flops).toBe(wantCached.flops)
    expect(ran(cached)).toEqual(wantCached.ffnRows)
    tf.dispose(Object.values(params))
  })

  it.each(exitCases)("early exit (%s), without a cache: keys and values only up to each sequence's last running position", async (_name, measure, heads, candidates) => {
    const { m, params } = exitModel(measure, heads, candidates)
    const trace = new DepthTrace({ exits: imposed })
    const rows = await matmulRows(() => void m.apply(params, tf.tensor2d(rows12, [2, 12], "int32"), { trace }))
    const want = expected(m.spec, rows, 24)
    expect(keyValueRows(rows)).toEqual([24, 18, 10, 3])
    // Queries: only the running positions in the full-attention blocks; every position of the span in the sliding-window block 2 (no key/value split).
    expect(inner.map((w) => rows.get(`${w}x16`) ?? 0)).toEqual([24, 9, 10, 3])
    expect(want.ffnRows).toEqual([24, 9, 6, 3])
    expect(ran(trace)).toEqual(want.ffnRows)
    expect(trace.flops).toBe(want.flops)
    tf.dispose(Object.values(params))
  })

  it.each([false, true])("mixture-of-depths (training: %s), padding included", async (training) => {
    const m = compile(model(mixtureOfDepths({ capacity: 0.25, every: 2, predictor: 8 })))
    const params = paramsOf(m, 8)
    const trace = new DepthTrace()
    const batch = batchOf(seqs)
    const rows = await matmulRows(() => void m.loss(params, batch, { training, dropoutSeed: 1, trace }))
    const want = expected(m.spec, rows, 24)
    expect(trace.flops).toBe(want.flops)
    expect(ran(trace)[0]).toBe(24)
    // Routed blocks: the rows run are the chosen positions, plus padding when the rows chose different numbers.
    for (const i of [1, 3]) expect(want.ffnRows[i]!).toBeGreaterThanOrEqual(ran(trace)[i]!)
    if (training) expect([ran(trace)[1], ran(trace)[3]]).toEqual([6, 6])
    tf.dispose([batch.tokens, batch.mask, ...Object.values(params)])
  })
})
