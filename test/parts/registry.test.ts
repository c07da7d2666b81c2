import * as tf from "@tensorflow/tfjs"
import { Schema } from "effect"
import { describe, expect, it } from "vitest"
import type { NamedParam } from "../../dsl/index.js"
import { makeOptimizer } from "../../src/optimizer/optimizer.js"
import { Rng } from "../../src/random/rng.js"
import { type OptimizerOf, type OptimizerTag, OptimizerSchema, optimizers } from "../../src/experiment/optimizer/spec.js"
import { constant, cosine, linear, LrSchedule, lrAt, schedules, wsd } from "../../src/schedule/index.js"
import { matmulFlops } from "../reference/matmul-flops.js"

/**
 * Every optimiser and schedule in the registries, looped over: an entry added to a registry
 * must give an example here (the records are typed by the registry's tags) and is then held
 * to what the run relies on.
 */
const optimizerExamples: { readonly [K in OptimizerTag]: OptimizerOf<K> } = {
  adamw: optimizers.adamw.make({ lr: constant(1e-2), weightDecay: 0.1 }),
  muon: optimizers.muon.make({ lr: constant(2e-2), weightDecay: 0.1, adamw: { lr: cosine({ peak: 1e-2, warmup: 1, floor: 1e-3 }) } }),
  lion: optimizers.lion.make({ lr: cosine({ peak: 1e-3, warmup: 1, floor: 1e-4 }) }),
}

const scheduleExamples: { readonly [K in keyof typeof schedules]: LrSchedule } = {
  constant: constant(3e-3),
  cosine: cosine({ peak: 3e-3, warmup: 3, floor: 3e-4 }),
  linear: linear({ peak: 3e-3, warmup: 3, floor: 0 }),
  wsd: wsd({ peak: 3e-3, warmup: 3, decay: 0.2, floor: 3e-5 }),
}

const roundTrips = <A>(schema: Schema.Codec<A, any>, value: A) => expect(Schema.decodeUnknownSync(schema)(JSON.parse(JSON.stringify(Schema.encodeSync(schema)(value))))).toEqual(value)

describe.each(Object.keys(optimizers) as OptimizerTag[])("optimiser %s", (tag) => {
  const config = optimizerExamples[tag]

  it("is plain data that a spec.json carries and decodes back", () => roundTrips(OptimizerSchema, config))

  it("restores from its exported state bit for bit: a resumed run takes the same steps as an uninterrupted one", () => {
    const before = tf.memory().numTensors
    const start = [0.5, -1, 2, 0.25]
    const grads = [[0.1, -0.2, 0.3, 0.05], [-0.4, 0.1, 0.2, 0.3], [0.2, 0.2, -0.1, 0.0]]
    const variable = (values: ArrayLike<number>) => tf.tidy(() => tf.variable(tf.tensor1d(Array.from(values))))
    // A vector that decays, a bias, and a block's matrix (what Muon orthogonalises).
    const table: NamedParam[] = [
      { name: "w", decl: { shape: [4], init: { kind: "zeros" }, decay: true } },
      { name: "b", decl: { shape: [2], init: { kind: "zeros" }, decay: false } },
      { name: "blocks.0.m", decl: { shape: [2, 3], init: { kind: "zeros" }, decay: true } },
    ]
    const make = (): Record<string, tf.Variable> => ({ w: variable(start), b: variable([0, 1]), "blocks.0.m": tf.tidy(() => tf.variable(tf.tensor2d([start.slice(0, 3), start.slice(1)]))) })
    const steps = (params: Record<string, tf.Variable>, opt: ReturnType<typeof makeOptimizer>, from: number, to: number) => {
      for (let i = from; i < to; i++) {
        const g = { w: tf.tensor1d(grads[i]!), b: tf.tensor1d([0.1 * i, -0.1]), "blocks.0.m": tf.tensor2d([grads[i]!.slice(0, 3), grads[(i + 1) % 3]!.slice(1)]) }
        opt.update(g, lrAt(config.lr, i + 1, grads.length))
        tf.dispose(Object.values(g))
      }
    }
    const straight = make()
    const initial = Object.fromEntries(Object.entries(straight).map(([n, p]) => [n, Array.from(p.dataSync())]))
    const a = makeOptimizer(config, straight, table, grads.length)
    steps(straight, a, 0, 3)
    const first = make()
    const b = makeOptimizer(config, first, table, grads.length)
    steps(first, b, 0, 1)
    const state = b.exportState()
    const resumed = Object.fromEntries(Object.entries(first).map(([n, p]) => [n, tf.tidy(() => tf.variable(tf.tensor(p.dataSync().slice(), p.shape)))]))
    const c = makeOptimizer(config, resumed, table, grads.length)
    c.importState({ step: state.step, moments: state.moments })
    steps(resumed, c, 1, 3)
    for (const name of Object.keys(straight)) {
      expect(Array.from(resumed[name]!.dataSync()), name).toEqual(Array.from(straight[name]!.dataSync()))
      // It did move the weights.
      expect(Array.from(straight[name]!.dataSync()), name).not.toEqual(initial[name])
    }
    for (const o of [a, b, c]) o.dispose()
    tf.dispose([...Object.values(straight), ...Object.values(first), ...Object.values(resumed)])
    expect(tf.memory().numTensors).toBe(before)
  })

  it("states its update's FLOPs as the matrix products one update runs, counted from the cpu backend's kernels", async () => {
    await tf.setBackend("cpu")
    // A wide and a tall block matrix (Muon orthogonalises both, the tall one transposed), an embedding and a gain it does not.
    const table: NamedParam[] = [
      { name: "embedding", decl: { shape: [9, 6], init: { kind: "zeros" }, decay: false, embedding: true } },
      { name: "blocks.0.wide", decl: { shape: [6, 10], init: { kind: "zeros" }, decay: true } },
      { name: "blocks.0.tall", decl: { shape: [10, 6], init: { kind: "zeros" }, decay: true } },
      { name: "blocks.0.gain", decl: { shape: [6], init: { kind: "zeros" }, decay: false } },
    ]
    const rng = Rng.fromSeed(3)
    const values = (shape: readonly number[]) => Array.from({ length: shape.reduce((x, y) => x * y, 1) }, () => rng.nextNormal())
    const params = Object.fromEntries(table.map((p) => [p.name, tf.tidy(() => tf.variable(tf.tensor(values(p.decl.shape), [...p.decl.shape])))]))
    const grads = Object.fromEntries(table.map((p) => [p.name, tf.tensor(values(p.decl.shape), [...p.decl.shape])]))
    const optimizer = makeOptimizer(config, params, table, 3)
    const counted = await matmulFlops(() => optimizer.update(grads, 1e-2))
    expect(optimizers[tag].updateFlops(config as never, table)).toBe(counted)
    optimizer.dispose()
    tf.dispose([...Object.values(params), ...Object.values(grads)])
  })
})

describe.each(Object.keys(schedules) as Array<keyof typeof schedules>)("schedule %s", (tag) => {
  const schedule = scheduleExamples[tag]

  it("is plain data that a spec.json carries and decodes back", () => roundTrips(LrSchedule, schedule))

  it("gives a finite, non-negative rate at every update of a run", () => {
    for (const total of [1, 7, 100])
      for (let step = 0; step <= total + 1; step++) {
        const lr = lrAt(schedule, step, total)
        expect(Number.isFinite(lr) && lr >= 0, `${tag} at ${step}/${total}: ${lr}`).toBe(true)
      }
  })
})
