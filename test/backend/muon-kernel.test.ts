import * as tf from "@tensorflow/tfjs"
import { beforeAll, expect, it } from "vitest"
import { Muon, type MuonConfig } from "../../src/optimizer/muon.js"
import { newtonSchulz } from "../../src/optimizer/newton-schulz.js"
import type { OptimizerState } from "../../src/optimizer/compute/compute.js"
import { Rng } from "../../src/random/rng.js"
import { compareBackends, normal, runOn } from "./compare.js"
import { describeNative } from "./native-suite.js"

/** The native Muon kernels (native/muon.cc) against the composed tfjs update on the stock cpu backend. */
describeNative("native Muon kernels equal the composed tfjs update", () => {
  const rng = Rng.fromSeed(28)
  // Inputs are made once so both backends see the same values.
  const input = (shape: number[], scale = 1): (() => tf.Tensor) => {
    const v = normal(rng, shape[0]! * shape[1]!).map((x) => x * scale)
    return () => tf.tensor(v, shape)
  }

  beforeAll(async () => {
    await tf.setBackend("native")
  })

  // Wide, tall (iterated on XᵀX), square; the last two pass the kernel's parallel threshold (2¹⁶ elements).
  const shapes: Array<[number, number]> = [[24, 40], [40, 24], [32, 32], [80, 820], [820, 80]]

  it.each(shapes)("Newton–Schulz of a %i×%i matrix agrees with the composed ops to float32 rounding", async (rows, cols) => {
    const g = input([rows, cols])
    // Entries are at most ~0.5; five iterations amplify float32 rounding (the polynomial's slope
    // near 0 is 3.4) to ~1e-6, whichever the matmuls' summation order.
    await compareBackends(() => newtonSchulz(g() as tf.Tensor2D, 5), 0, 4e-6, "5 steps")
    // Other coefficients reach the kernel: the classic cubic iteration.
    await compareBackends(() => newtonSchulz(g() as tf.Tensor2D, 3, [1.5, -0.5, 0]), 0, 4e-6, "cubic")
    // The tolerance has teeth: one step fewer is far off.
    const five = await runOn("native", () => newtonSchulz(g() as tf.Tensor2D, 5))
    const four = await runOn("native", () => newtonSchulz(g() as tf.Tensor2D, 4))
    expect(Math.max(...five[0]!.values.map((x, i) => Math.abs(x - four[0]!.values[i]!)))).toBeGreaterThan(1e-2)
    const { kernelNames } = await tf.profile(() => tf.dispose(newtonSchulz(g() as tf.Tensor2D, 5)))
    expect(kernelNames).toEqual(["NewtonSchulz"])
  })

  const shapesOf: Record<string, number[]> = {
    "blocks.0.attention.wq": [32, 32],
    "blocks.0.ffn.w_in": [32, 96],
    "blocks.0.ffn.w_out": [96, 32],
    "embed.tokens": [10, 32],
  }
  const start = Object.fromEntries(Object.entries(shapesOf).map(([n, s]) => [n, input(s, 0.1)]))
  const gradSteps = [0, 1, 2].map(() => Object.fromEntries(Object.entries(shapesOf).map(([n, s]) => [n, input(s, 0.01)])))
  const config = (nesterov: boolean): MuonConfig => ({
    momentum: 0.95,
    nesterov,
    steps: 5,
    weightDecay: 0.1,
    // w_out is not decayed, so both branches of the kernel run.
    decay: (n) => n !== "blocks.0.ffn.w_out",
    orthogonalised: (n) => n.startsWith("blocks."),
    adamw: { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, decay: () => true },
    adamwLr: () => 1e-3,
  })
  const fresh = () => Object.fromEntries(Object.entries(start).map(([n, v]) => [n, tf.variable(v())]))
  const update = (opt: Muon, k: number) => {
    const grads = Object.fromEntries(Object.entries(gradSteps[k]!).map(([n, f]) => [n, f()]))
    opt.update(grads, [0.02, 0.05, 0.03][k]!)
    tf.dispose(Object.values(grads))
  }
  const names = Object.keys(shapesOf)
  /** Parameters then momentum buffers after three updates. */
  const threeUpdates = (nesterov: boolean) => (): tf.Tensor[] => {
    const params = fresh()
    const opt = new Muon(params, config(nesterov))
    for (const k of [0, 1, 2]) update(opt, k)
    const state = opt.exportState()
    const out = [...names.map((n) => params[n]!.clone()), ...names.slice(0, 3).map((n) => tf.tensor(state.moments[`momentum.${n}`]!.data))]
    opt.dispose()
    tf.dispose(Object.values(params))
    return out
  }

  it.each([true, false])("three updates (Nesterov %s): parameters to float32 rounding, momentum bit for bit", async (nesterov) => {
    const run = threeUpdates(nesterov)
    const [cpu, native] = [await runOn("cpu", run), await runOn("native", run)]
    expect(native.map((r) => r.shape)).toEqual(cpu.map((r) => r.shape))
    for (let j = 0; j < names.length; j++) {
      const diff = Math.max(...native[j]!.values.map((x, i) => Math.abs(x - cpu[j]!.values[i]!)))
      // The step is lr·scale ≤ 0.05·√3 times an orthogonalised entry: float32 rounding of NS is ~1e-7 here.
      expect(diff, names[j]).toBeLessThan(1e-6)
    }
    // The decayed matrices moved: the comparison is not between two untouched copies.
    const before = start["blocks.0.attention.wq"]!().dataSync()
    expect(Math.max(...cpu[0]!.values.map((x, i) => Math.abs(x - before[i]!)))).toBeGreaterThan(1e-2)
    for (let j = names.length; j < cpu.length; j++) expect(Array.from(native[j]!.values), `momentum ${j}`).toEqual(Array.from(cpu[j]!.values))
    await tf.setBackend("native")
    const { kernelNames } = await tf.profile(() => tf.dispose(tf.tidy(run)))
    expect(kernelNames).toContain("MuonUpdate")
    expect(kernelNames).not.toContain("BatchMatMul")
  })

  it("an exported state resumes bit for bit, and updates leave no tensors behind", async () => {
    await tf.setBackend("native")
    const straight = fresh()
    const a = new Muon(straight, config(true))
    for (const k of [0, 1, 2]) update(a, k)

    const resumed = fresh()
    const first = new Muon(resumed, config(true))
    update(first, 0)
    update(first, 1)
    const state: OptimizerState = first.exportState()
    expect(Object.keys(state.moments).filter((k) => k.startsWith("momentum.")).sort()).toEqual(names.slice(0, 3).map((n) => `momentum.${n}`).sort())
    first.dispose()
    const second = new Muon(resumed, config(true))
    second.importState(state)
    const tensors = tf.memory().numTensors
    update(second, 2)
    expect(tf.memory().numTensors).toBe(tensors)
    for (const n of names) expect(Array.from(resumed[n]!.dataSync()), n).toEqual(Array.from(straight[n]!.dataSync()))
    expect(second.exportState()).toEqual(a.exportState())
    a.dispose()
    second.dispose()
    tf.dispose([...Object.values(straight), ...Object.values(resumed)])
  })
})
