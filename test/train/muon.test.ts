import * as tf from "@tensorflow/tfjs"
import { NodeServices } from "@effect/platform-node"
import { Effect, Exit, Layer, Schema } from "effect"
import { mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { attention, block, decoder, depth, earlyExit, ffn, norm, paramTable, type NamedParam } from "../../dsl/index.js"
import { isHiddenMatrix } from "../../src/experiment/optimizer/kinds/muon.js"
import { muon, OptimizerSchema } from "../../src/experiment/optimizer/spec.js"
import { ProgressSink } from "../../src/io/progress.js"
import { type Coefficients, newtonSchulz, quintic } from "../../src/optimizer/newton-schulz.js"
import { makeOptimizer } from "../../src/optimizer/optimizer.js"
import { Rng } from "../../src/random/rng.js"
import { constant, linear } from "../../src/schedule/index.js"
import { trainRun } from "../../src/train/run.js"
import { matmulFlops } from "../reference/matmul-flops.js"
import { crashingAfter, syntheticData, tinyRun } from "./fixtures.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
  await tf.ready()
})

type Matrix = number[][]
const transpose = (a: Matrix): Matrix => a[0]!.map((_, j) => a.map((row) => row[j]!))
const matMul = (a: Matrix, b: Matrix): Matrix => a.map((row) => b[0]!.map((_, j) => row.reduce((s, x, k) => s + x * b[k]![j]!, 0)))
const frobenius = (a: Matrix): number => Math.sqrt(a.flat().reduce((s, x) => s + x * x, 0))
const maxAbsDiff = (a: Matrix, b: Matrix): number => Math.max(...a.flatMap((row, i) => row.map((x, j) => Math.abs(x - b[i]![j]!))))
const randomMatrix = (rng: Rng, rows: number, cols: number): Matrix => Array.from({ length: rows }, () => Array.from({ length: cols }, () => rng.nextNormal()))

/** The same iteration as src/optimizer/newton-schulz.ts, in float64. */
const newtonSchulz64 = (g: Matrix, steps: number, [a, b, c]: Coefficients = quintic): Matrix => {
  const tall = g.length > g[0]!.length
  const start = tall ? transpose(g) : g
  const norm = frobenius(start) + 1e-7
  let x = start.map((row) => row.map((v) => v / norm))
  for (let i = 0; i < steps; i++) {
    const gram = matMul(x, transpose(x))
    const square = matMul(gram, gram)
    const poly = gram.map((row, r) => row.map((v, k) => b * v + c * square[r]![k]!))
    const polyX = matMul(poly, x)
    x = x.map((row, r) => row.map((v, k) => a * v + polyX[r]![k]!))
  }
  return tall ? transpose(x) : x
}

/**
 * A thin SVD G = U·diag(s)·Vᵀ in float64 by one-sided Jacobi (Hestenes): rotate pairs of
 * columns until all are orthogonal; their norms are the singular values.
 */
const svd = (g: Matrix): { u: Matrix; s: number[]; v: Matrix } => {
  const wide = g.length < g[0]!.length
  const a = (wide ? transpose(g) : g).map((row) => [...row])
  const n = a[0]!.length
  const v: Matrix = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (i === j ? 1 : 0)))
  for (let sweep = 0; sweep < 60; sweep++) {
    let off = 0
    for (let p = 0; p < n - 1; p++)
      for (let q = p + 1; q < n; q++) {
        const [alpha, beta, gamma] = a.reduce(([x, y, z], row) => [x + row[p]! ** 2, y + row[q]! ** 2, z + row[p]! * row[q]!], [0, 0, 0])
        off = Math.max(off, Math.abs(gamma) / Math.sqrt(alpha * beta))
        if (gamma === 0) continue
        const zeta = (beta - alpha) / (2 * gamma)
        const t = Math.sign(zeta || 1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta))
        const c = 1 / Math.sqrt(1 + t * t), s = c * t
        for (const m of [a, v])
          for (const row of m) [row[p], row[q]] = [c * row[p]! - s * row[q]!, s * row[p]! + c * row[q]!]
      }
    if (off < 1e-15) break
  }
  const s = Array.from({ length: n }, (_, j) => Math.sqrt(a.reduce((t, row) => t + row[j]! ** 2, 0)))
  const u = a.map((row) => row.map((x, j) => x / s[j]!))
  return wide ? { u: v, s, v: u } : { u, s, v }
}

/** U·diag(d)·Vᵀ. */
const compose = ({ u, v }: { u: Matrix; v: Matrix }, d: number[]): Matrix => matMul(u.map((row) => row.map((x, j) => x * d[j]!)), transpose(v))

/** What `steps` iterations do to one singular value (of the normalised matrix). */
const iterated = (s: number, steps: number, [a, b, c]: Coefficients = quintic): number => {
  for (let i = 0; i < steps; i++) s = a * s + b * s ** 3 + c * s ** 5
  return s
}

const ns32 = (g: Matrix, steps: number, coefficients?: Coefficients): Matrix =>
  tf.tidy(() => newtonSchulz(tf.tensor2d(g), steps, coefficients).arraySync())

// Wide, tall (transposed first) and square.
const shapes: Array<[number, number]> = [[6, 10], [10, 6], [7, 7]]

describe("Newton–Schulz orthogonalisation", () => {
  it.each(shapes)("%i×%i: the float32 iteration agrees with the same iteration in float64 to float32 rounding", (rows, cols) => {
    const g = randomMatrix(Rng.fromSeed(rows * 100 + cols), rows, cols)
    const ref = newtonSchulz64(g, 5)
    expect(maxAbsDiff(ns32(g, 5), ref)).toBeLessThan(2e-6)
    // The comparison has teeth: one step fewer is far off.
    expect(maxAbsDiff(ns32(g, 4), ref)).toBeGreaterThan(1e-2)
  })

  it.each(shapes)("%i×%i: keeps G's singular vectors and maps each singular value into [0.68, 1.14], as an SVD in float64 says", (rows, cols) => {
    const g = randomMatrix(Rng.fromSeed(rows * 7 + cols), rows, cols)
    const dec = svd(g)
    // The SVD itself is right: it rebuilds G.
    expect(maxAbsDiff(compose(dec, dec.s), g)).toBeLessThan(1e-12)
    const norm = frobenius(g)
    // The reference's band holds for singular values above ~0.0015 of the Frobenius norm: these are.
    expect(Math.min(...dec.s) / norm).toBeGreaterThan(0.002)
    const mapped = dec.s.map((s) => iterated(s / norm, 5))
    for (const s of mapped) expect(s >= 0.68 && s <= 1.14, `singular value ${s}`).toBe(true)
    const o = ns32(g, 5)
    expect(maxAbsDiff(o, compose(dec, mapped))).toBeLessThan(2e-6)
    // Not U·Vᵀ itself: the quintic trades exactness for speed.
    expect(maxAbsDiff(o, compose(dec, dec.s.map(() => 1)))).toBeGreaterThan(1e-2)
  })

  it.each(shapes)("%i×%i: the classic cubic iteration, run long, converges to U·Vᵀ", (rows, cols) => {
    const g = randomMatrix(Rng.fromSeed(rows + cols), rows, cols)
    const dec = svd(g)
    expect(maxAbsDiff(ns32(g, 60, [1.5, -0.5, 0]), compose(dec, dec.s.map(() => 1)))).toBeLessThan(2e-6)
  })
})

describe("Muon", () => {
  it("takes the blocks' hidden matrices; embeddings, heads, exit heads, gains, biases and routers go to AdamW", () => {
    const layers = depth(2, block({ attention: attention("full", { heads: 2, bias: true }), ffn: ffn("gelu"), norm: norm("rms") }), earlyExit({ threshold: 0.5, heads: "per-block" }))
    const table = paramTable(decoder({ vocab: 17, width: 8, context: 8, tied: false, layers }))
    const hidden = table.filter(isHiddenMatrix).map((p) => p.name)
    expect(hidden.length).toBeGreaterThan(0)
    for (const name of hidden) expect(name).toMatch(/^blocks\.\d+\.\d+\.(attention\.w[qkvo]|ffn\.)/)
    const rest = table.filter((p) => !isHiddenMatrix(p)).map((p) => p.name)
    for (const name of ["embed.tokens", "head.weight", "blocks.0.exit.weight", "blocks.0.0.norm.gain", "blocks.0.0.attention.bq"]) expect(rest).toContain(name)
    expect(hidden.filter((n) => n.includes("ffn")).length).toBe(4)
  })

  it("one update equals a hand computation: orthogonalised Nesterov momentum, scaled and decayed; AdamW at its own rate for the rest", () => {
    const table: NamedParam[] = [
      { name: "blocks.0.0.attention.wq", decl: { shape: [2, 3], init: { kind: "zeros" }, decay: true } },
      { name: "embed.tokens", decl: { shape: [2, 2], init: { kind: "zeros" }, decay: false, embedding: true } },
    ]
    const w0 = [[1, 2, 3], [4, 5, 6]], e0 = [[1, -1], [0.5, 2]]
    const params = { "blocks.0.0.attention.wq": tf.variable(tf.tensor2d(w0)), "embed.tokens": tf.variable(tf.tensor2d(e0)) }
    // 4 updates; the AdamW part decays linearly from 0.1 without warmup: 0.075 at update 1.
    const config = muon({ lr: constant(0.02), weightDecay: 0.5, adamw: { lr: linear({ peak: 0.1, warmup: 0, floor: 0 }), weightDecay: 0.3 } })
    const opt = makeOptimizer(config, params, table, 4)
    // G = diag(3, 4) padded to 2×3: U = I, V = the first two unit vectors, singular values 3 and 4
    // (0.6 and 0.8 of the Frobenius norm 5). Nesterov's first step is (1 − β)(1 + β)·G, a
    // multiple of G, which the normalisation removes.
    const grads = { "blocks.0.0.attention.wq": tf.tensor2d([[3, 0, 0], [0, 4, 0]]), "embed.tokens": tf.tensor2d([[0.5, -2], [1, 0]]) }
    opt.update(grads, 0.02)
    const [s1, s2] = [iterated(0.6, 5), iterated(0.8, 5)]
    const scale = Math.sqrt(3 / 2) // √max(1, fan_out / fan_in) of a [fan_in 2, fan_out 3] weight
    const decay = 1 - 0.02 * 0.5
    const orthogonal = [[s1, 0, 0], [0, s2, 0]]
    const expected = w0.map((row, i) => row.map((x, j) => x * decay - 0.02 * scale * orthogonal[i]![j]!))
    expect(maxAbsDiff(params["blocks.0.0.attention.wq"].arraySync(), expected)).toBeLessThan(1e-6)
    // Adam's first step is lr·g/(|g| + ε): lr·sign(g); an embedding does not decay; a zero gradient leaves it.
    const adamLr = 0.075
    const sign = [[1, -1], [1, 0]]
    expect(maxAbsDiff(params["embed.tokens"].arraySync(), e0.map((row, i) => row.map((x, j) => x - adamLr * sign[i]![j]!)))).toBeLessThan(1e-6)
    // The momentum buffer holds (1 − β)·G.
    const state = opt.exportState()
    expect(state.step).toBe(1)
    expect(Array.from(state.moments["momentum.blocks.0.0.attention.wq"]!.data)).toEqual(Array.from(Float32Array.from([3, 0, 0, 0, 4, 0].map((x) => x * Math.fround(0.05)))))
    expect(Object.keys(state.moments).sort()).toEqual(["m.embed.tokens", "momentum.blocks.0.0.attention.wq", "v.embed.tokens"])
    opt.dispose()
    tf.dispose([...Object.values(params), ...Object.values(grads)])
  })

  it("a spec with a momentum, Newton–Schulz step count or AdamW part out of range is refused at the field", () => {
    const good = Schema.encodeSync(OptimizerSchema)(muon({ lr: constant(0.02), adamw: { lr: constant(1e-3) } }))
    const decode = (o: object) => Schema.decodeUnknownSync(OptimizerSchema)({ ...good, ...o }, { errors: "all" })
    expect(decode({})).toEqual(muon({ lr: constant(0.02), adamw: { lr: constant(1e-3) } }))
    expect(() => decode({ momentum: 1 })).toThrow(/\["momentum"\]/)
    expect(() => decode({ steps: 0 })).toThrow(/\["steps"\]/)
    expect(() => decode({ adamw: { ...(good as { adamw: object }).adamw, beta2: 1 } })).toThrow(/\["adamw"\]\["beta2"\]/)
  })

  it("refuses a state whose momentum names no matrix it updates, or that lacks one", () => {
    const table: NamedParam[] = [{ name: "blocks.0.w", decl: { shape: [2, 2], init: { kind: "zeros" }, decay: true } }]
    const params = { "blocks.0.w": tf.variable(tf.zeros([2, 2])) }
    const opt = makeOptimizer(muon({ lr: constant(0.02), adamw: { lr: constant(1e-3) } }), params, table, 4)
    const entry = { shape: [2, 2], data: new Float32Array(4) }
    expect(() => opt.importState({ step: 1, moments: { "momentum.blocks.0.w": entry, "momentum.blocks.1.w": entry } })).toThrow(/"momentum.blocks.1.w", which matches no matrix/)
    expect(() => opt.importState({ step: 1, moments: {} })).toThrow(/lacks "momentum.blocks.0.w"/)
    opt.dispose()
    tf.dispose(Object.values(params))
  })
})

describe("a run with Muon", () => {
  const quiet = Layer.succeed(ProgressSink, { isTTY: false, columns: () => 80, write: () => {}, now: () => performance.now() })
  const withMuon = (steps: number, every?: number) => {
    const base = tinyRun({ steps, ...(every === undefined ? {} : { every }) })
    return { ...base, training: { ...base.training, optimizer: muon({ lr: constant(0.02), adamw: { lr: linear({ peak: 3e-3, warmup: 2, floor: 0 }) } }) } }
  }
  const trainIn = (run: ReturnType<typeof withMuon>, data: ReturnType<typeof syntheticData>, out: string) =>
    Effect.runPromiseExit(
      Effect.scoped(trainRun(run, data, { out, fresh: false, backend: { name: "cpu", detail: "test" }, resumeCommand: "(test)" })).pipe(Effect.provide(Layer.merge(NodeServices.layer, quiet))),
    )
  const train = (run: ReturnType<typeof withMuon>, data = syntheticData()) => {
    const out = mkdtempSync(join(tmpdir(), "muon-run-"))
    return { out, exit: trainIn(run, data, out) }
  }

  it("decreases the loss", async () => {
    const { out, exit } = train(withMuon(16))
    expect(Exit.isSuccess(await exit)).toBe(true)
    const losses = readFileSync(join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((r) => typeof r.loss === "number").map((r) => r.loss as number)
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length
    // From ln 17 ≈ 2.83 (uniform over the 17 ids): seeded, so the margin is the same on every machine.
    expect(mean(losses.slice(-4))).toBeLessThan(mean(losses.slice(0, 4)) - 0.15)
  })

  it("records the Newton–Schulz FLOPs of an update, as the kernels of one update on the model's parameters count them, and by the target", async () => {
    const plain = withMuon(4)
    const run = { ...plain, training: { ...plain.training, budget: { steps: 4, bpb: 100 }, eval: { ...plain.training.eval, every: 2 } } }
    const result = await train(run).exit
    if (Exit.isFailure(result)) throw new Error(String(result.cause))
    const table = paramTable(run.model)
    const rng = Rng.fromSeed(5)
    const tensors = () => Object.fromEntries(table.map((p) => [p.name, tf.tensor(Array.from({ length: p.decl.shape.reduce((a, b) => a * b, 1) }, () => rng.nextNormal()), [...p.decl.shape])]))
    const params = tf.tidy(() => Object.fromEntries(Object.entries(tensors()).map(([name, t]) => [name, tf.variable(t)])))
    const grads = tensors()
    const optimizer = makeOptimizer(run.training.optimizer, params, table, 4)
    const perStep = await matmulFlops(() => optimizer.update(grads, 0.02))
    optimizer.dispose()
    tf.dispose([...Object.values(params), ...Object.values(grads)])
    expect(perStep).toBeGreaterThan(0)
    expect(result.value.optimizerFlopsPerStep).toBe(perStep)
    // The target (any bpb reaches 100) is met at the first evaluation, step 2.
    expect(result.value.target?.reached).toMatchObject({ step: 2, optimizerFlops: 2 * perStep })
  })

  it("resumes after a crash byte-identical to an uninterrupted run (momentum and the AdamW part's moments and schedule)", async () => {
    const run = withMuon(8, 4)
    const straight = train(run)
    expect(Exit.isSuccess(await straight.exit)).toBe(true)
    // 2 micro-batches per step: the stream fails in step 5, after the checkpoint at step 4.
    const crashed = train(run, crashingAfter(syntheticData(), 9))
    expect(Exit.isSuccess(await crashed.exit)).toBe(false)
    expect(Exit.isSuccess(await trainIn(run, syntheticData(), crashed.out))).toBe(true)
    const bytes = (dir: string, file: string) => readFileSync(join(dir, "checkpoint", file))
    expect(bytes(crashed.out, "model.safetensors").equals(bytes(straight.out, "model.safetensors"))).toBe(true)
    expect(bytes(crashed.out, "optimizer.safetensors").equals(bytes(straight.out, "optimizer.safetensors"))).toBe(true)
  })
})
