import * as tf from "@tensorflow/tfjs"
import { NodeServices } from "@effect/platform-node"
import { Effect, Exit, Layer, Schema } from "effect"
import { mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import type { NamedParam } from "../../dsl/index.js"
import { lion, OptimizerSchema } from "../../src/experiment/optimizer/spec.js"
import { ProgressSink } from "../../src/io/progress.js"
import { makeOptimizer } from "../../src/optimizer/optimizer.js"
import { constant, linear } from "../../src/schedule/index.js"
import { trainRun } from "../../src/train/run.js"
import { crashingAfter, syntheticData, tinyRun } from "./fixtures.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
  await tf.ready()
})

/** Lion's update in float64 (the paper's Algorithm 2, decoupled decay first), one parameter. */
const lion64 = (p: number[], m: number[], g: number[], lr: number, { beta1, beta2, wd }: { beta1: number; beta2: number; wd: number }) => {
  const next = p.map((x, i) => x * (1 - lr * wd) - lr * Math.sign(beta1 * m[i]! + (1 - beta1) * g[i]!))
  return { p: next, m: m.map((x, i) => beta2 * x + (1 - beta2) * g[i]!) }
}

describe("Lion", () => {
  it("three updates equal a float64 reference: sign of the interpolation, sign(0) = 0, decay only where AdamW decays", () => {
    const before = tf.memory().numTensors
    const table: NamedParam[] = [
      { name: "blocks.0.0.attention.wq", decl: { shape: [2, 2], init: { kind: "zeros" }, decay: true } },
      { name: "embed.tokens", decl: { shape: [3], init: { kind: "zeros" }, decay: false, embedding: true } },
    ]
    const start = { "blocks.0.0.attention.wq": [0.5, -1, 2, 0.25], "embed.tokens": [1, -0.5, 0.3] }
    const shapes = { "blocks.0.0.attention.wq": [2, 2], "embed.tokens": [3] }
    // The first update of each has a zero gradient where the moment is still zero: sign(0) = 0, so only decay moves it.
    // The third update of wq's element 1 has a gradient that flips the sign against the moment.
    const grads = [
      { "blocks.0.0.attention.wq": [0.1, 0, -0.3, 0.05], "embed.tokens": [0, 0.2, -0.4] },
      { "blocks.0.0.attention.wq": [-0.4, 0.1, 0.2, 0.3], "embed.tokens": [0.3, -0.1, 0.2] },
      { "blocks.0.0.attention.wq": [0.2, -5, -0.1, -0.6], "embed.tokens": [-0.2, 0.1, 0.05] },
    ]
    const rates = [1e-2, 5e-3, 2e-3]
    const hp = { beta1: 0.9, beta2: 0.99, wd: 0.5 }
    const params = Object.fromEntries(Object.entries(start).map(([n, v]) => [n, tf.tidy(() => tf.variable(tf.tensor(v, shapes[n as keyof typeof shapes])))]))
    const opt = makeOptimizer(lion({ lr: linear({ peak: 1e-2, warmup: 0, floor: 0 }), weightDecay: hp.wd, betas: [hp.beta1, hp.beta2] }), params, table, 3)
    const ref = Object.fromEntries(Object.entries(start).map(([n, v]) => [n, { p: v, m: v.map(() => 0) }]))
    grads.forEach((step, i) => {
      const g = Object.fromEntries(Object.entries(step).map(([n, v]) => [n, tf.tensor(v, shapes[n as keyof typeof shapes])]))
      opt.update(g, rates[i]!)
      tf.dispose(Object.values(g))
      for (const [n, v] of Object.entries(step)) ref[n] = lion64(ref[n]!.p, ref[n]!.m, v, rates[i]!, { ...hp, wd: n === "embed.tokens" ? 0 : hp.wd })
      for (const n of Object.keys(start)) {
        const got = Array.from(params[n]!.dataSync())
        ref[n]!.p.forEach((x, j) => expect(got[j], `${n}[${j}] after update ${i + 1}`).toBeCloseTo(x, 6))
      }
    })
    const state = opt.exportState()
    expect(state.step).toBe(3)
    // One moment per weight, named as AdamW's first.
    expect(Object.keys(state.moments).sort()).toEqual(["m.blocks.0.0.attention.wq", "m.embed.tokens"])
    for (const n of Object.keys(start)) Array.from(state.moments[`m.${n}`]!.data).forEach((x, j) => expect(x).toBeCloseTo(ref[n]!.m[j]!, 7))
    opt.dispose()
    tf.dispose(Object.values(params))
    expect(tf.memory().numTensors).toBe(before)
  })

  it("a zero gradient on a zero moment leaves a weight that does not decay exactly where it was", () => {
    const table: NamedParam[] = [{ name: "b", decl: { shape: [2], init: { kind: "zeros" }, decay: false } }]
    const params = { b: tf.variable(tf.tensor1d([0.75, -2])) }
    const opt = makeOptimizer(lion({ lr: constant(0.1) }), params, table, 1)
    const g = { b: tf.tensor1d([0, 1]) }
    opt.update(g, 0.1)
    expect(Array.from(params.b.dataSync())).toEqual([0.75, Math.fround(-2.1)])
    opt.dispose()
    tf.dispose([params.b, g.b])
  })

  it("a spec with a beta out of range is refused at the field; the defaults are the paper's betas", () => {
    const good = Schema.encodeSync(OptimizerSchema)(lion({ lr: constant(1e-4) }))
    const decode = (o: object) => Schema.decodeUnknownSync(OptimizerSchema)({ ...good, ...o }, { errors: "all" })
    expect(decode({})).toMatchObject({ kind: "lion", beta1: 0.9, beta2: 0.99 })
    expect(() => decode({ beta1: 1 })).toThrow(/\["beta1"\]/)
    expect(() => decode({ beta2: -0.1 })).toThrow(/\["beta2"\]/)
  })

  it("refuses a state with a moment of no parameter, or lacking one", () => {
    const table: NamedParam[] = [{ name: "w", decl: { shape: [2], init: { kind: "zeros" }, decay: true } }]
    const params = { w: tf.variable(tf.zeros([2])) }
    const opt = makeOptimizer(lion({ lr: constant(1e-3) }), params, table, 4)
    const entry = { shape: [2], data: new Float32Array(2) }
    expect(() => opt.importState({ step: 1, moments: { "m.w": entry, "v.w": entry } })).toThrow(/"v.w", which matches no parameter's moment/)
    expect(() => opt.importState({ step: 1, moments: {} })).toThrow(/lacks "m.w"/)
    opt.dispose()
    tf.dispose(Object.values(params))
  })
})

describe("a run with Lion", () => {
  const quiet = Layer.succeed(ProgressSink, { isTTY: false, columns: () => 80, write: () => {}, now: () => performance.now() })
  const withLion = (steps: number, every: number) => {
    const base = tinyRun({ steps, every })
    return { ...base, training: { ...base.training, optimizer: lion({ lr: linear({ peak: 3e-3, warmup: 2, floor: 0 }), clip: 0.5 }) } }
  }
  const trainIn = (run: ReturnType<typeof withLion>, data: ReturnType<typeof syntheticData>, out: string) =>
    Effect.runPromiseExit(
      Effect.scoped(trainRun(run, data, { out, fresh: false, backend: { name: "cpu", detail: "test" }, resumeCommand: "(test)" })).pipe(Effect.provide(Layer.merge(NodeServices.layer, quiet))),
    )

  it("resumes after a crash byte-identical to an uninterrupted run (its moments, schedule, clipping and accumulation)", async () => {
    const run = withLion(8, 4)
    expect(run.training.accumulate).toBeGreaterThan(1)
    const straight = mkdtempSync(join(tmpdir(), "lion-run-"))
    expect(Exit.isSuccess(await trainIn(run, syntheticData(), straight))).toBe(true)
    // 2 micro-batches per step: the stream fails in step 5, after the checkpoint at step 4.
    const crashed = mkdtempSync(join(tmpdir(), "lion-run-"))
    expect(Exit.isSuccess(await trainIn(run, crashingAfter(syntheticData(), 9), crashed))).toBe(false)
    expect(Exit.isSuccess(await trainIn(run, syntheticData(), crashed))).toBe(true)
    const bytes = (dir: string, file: string) => readFileSync(join(dir, "checkpoint", file))
    expect(bytes(crashed, "model.safetensors").equals(bytes(straight, "model.safetensors"))).toBe(true)
    expect(bytes(crashed, "optimizer.safetensors").equals(bytes(straight, "optimizer.safetensors"))).toBe(true)
  })
})
