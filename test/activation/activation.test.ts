import * as tf from "@tensorflow/tfjs"
import { beforeAll, describe, expect, it } from "vitest"
import { attention, block, decoder, depth, ffn, norm, paramCounts } from "../../dsl/index.js"
import { ffnHidden, ffnParams } from "../../dsl/ffn.js"
import { activation, activationKinds, activationModule, type ActivationSpec, type ActivationTag } from "../../dsl/kinds/activation/index.js"
import { activationApply } from "../../src/activation/index.js"
import { applyFfn } from "../../src/ffn/ffn.js"
import type { LayerCtx } from "../../src/model/kind.js"
import { compile } from "../../src/model/index.js"
import { Rng } from "../../src/random/rng.js"
import { erf } from "../reference/erf.js"

/** Every activation against its formula in float64, inside the FFN, and inside a causal decoder. */
beforeAll(async () => {
  await tf.setBackend("cpu")
})

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x))
const gelu = (x: number) => 0.5 * x * (1 + erf(x / Math.SQRT2))
const geluTanh = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)))
const relu = (x: number) => Math.max(0, x)

const inputs = (seed: number, n = 200): number[] => {
  const rng = Rng.fromSeed(seed)
  return [0, -0, 1, -1, 3.5, -3.5, 6, -6, ...Array.from({ length: n }, () => 3 * rng.nextNormal())]
}

const expectClose = (got: ArrayLike<number>, want: number[], tol: number) => {
  want.forEach((w, i) => expect(Math.abs(got[i]! - w)).toBeLessThanOrEqual(tol * (1 + Math.abs(w))))
}

describe("activation formulas", () => {
  it("the reference erf matches known values", () => {
    expect(erf(1)).toBeCloseTo(0.8427007929497149, 14)
    expect(erf(0.5)).toBeCloseTo(0.5204998778130465, 14)
    expect(erf(-2)).toBeCloseTo(-0.9953222650189527, 14)
    expect(erf(3.5)).toBeCloseTo(0.9999992569016276, 14)
    expect(gelu(1)).toBeCloseTo(0.8413447460685429, 14)
  })

  const ungated: Array<[string, ActivationSpec, (x: number) => number]> = [
    ["relu", activation("relu"), relu],
    ["gelu (erf)", activation("gelu"), gelu],
    ["gelu-tanh", activation("gelu-tanh"), geluTanh],
    ["swish β=1", activation("swish"), (x) => x * sigmoid(x)],
    ["swish β=1.7", activation("swish", { beta: 1.7 }), (x) => x * sigmoid(1.7 * x)],
    ["silu", activation("silu"), (x) => x * sigmoid(x)],
    ["relu2", activation("relu2"), (x) => relu(x) ** 2],
  ]

  it.each(ungated)("%s equals its formula", (_name, spec, f) => {
    const xs = inputs(1)
    const got = activationApply(spec).apply(spec, tf.tensor1d(xs)).dataSync()
    expectClose(got, xs.map(f), 2e-6)
  })

  it("gelu-tanh stays within 1e-3 of the exact gelu, and they differ", () => {
    const xs = inputs(2)
    const diff = xs.map((x) => Math.abs(gelu(x) - geluTanh(x)))
    expect(Math.max(...diff)).toBeLessThan(1e-3)
    expect(Math.max(...diff)).toBeGreaterThan(1e-5)
  })

  const phi = (x: number) => Math.exp(-0.5 * x * x) / Math.sqrt(2 * Math.PI)
  const tanhDerivative = (x: number) => {
    const c = Math.sqrt(2 / Math.PI)
    const th = Math.tanh(c * (x + 0.044715 * x ** 3))
    return 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * c * (1 + 3 * 0.044715 * x * x)
  }
  const swishDerivative = (beta: number) => (x: number) => sigmoid(beta * x) * (1 + beta * x * (1 - sigmoid(beta * x)))
  const derivatives: Array<[string, ActivationSpec, (x: number) => number]> = [
    ["relu", activation("relu"), (x) => (x > 0 ? 1 : 0)],
    ["gelu (erf)", activation("gelu"), (x) => 0.5 * (1 + erf(x / Math.SQRT2)) + x * phi(x)],
    ["gelu-tanh", activation("gelu-tanh"), tanhDerivative],
    ["swish β=1.7", activation("swish", { beta: 1.7 }), swishDerivative(1.7)],
    ["relu2", activation("relu2"), (x) => 2 * relu(x)],
  ]

  it.each(derivatives)("the gradient of %s equals its derivative", (_name, spec, df) => {
    // ±0 left out: ReLU-like kinds have no derivative there.
    const xs = inputs(5).filter((x) => x !== 0)
    const got = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(activationApply(spec).apply(spec, x), 3)))(tf.tensor1d(xs)).dataSync()
    expectClose(got, xs.map((x) => 3 * df(x)), 1e-5)
  })

  it("relu's gradient is tf.relu's bit for bit, ±0 included, keeping only the output for the backward pass", () => {
    const spec = activation("relu")
    const x = tf.tensor1d(inputs(6))
    const dy = tf.tensor1d(inputs(7))
    const grad = (f: (t: tf.Tensor) => tf.Tensor) => Array.from(tf.grad((t: tf.Tensor) => tf.sum(tf.mul(f(t), dy)))(x).dataSync())
    expect(grad((t) => activationApply(spec).apply(spec, t))).toEqual(grad((t) => tf.relu(t)))
    // Buffers still held once the forward pass is done: the output (which the next product
    // keeps anyway) and the scalar 2; with tfjs's gradient the input x·2 too.
    const held = (name: string, f: (t: tf.Tensor) => tf.Tensor) => {
      const w = tf.variable(x, true, name)
      let buffers = 0
      const { value, grads } = tf.variableGrads(() => {
        const before = tf.memory().numDataBuffers
        const y = tf.tidy(() => f(tf.mul(w, 2)))
        buffers = tf.memory().numDataBuffers - before
        return tf.sum(tf.mul(y, y)) as tf.Scalar
      }, [w])
      tf.dispose([w, value, ...Object.values(grads)])
      return buffers
    }
    expect(held("relu-held", (t) => activationApply(spec).apply(spec, t))).toBe(2)
    expect(held("tf-relu-held", (t) => tf.relu(t))).toBe(3)
    tf.dispose([x, dy])
  })

  const gated: Array<[string, ActivationSpec, (x: number) => number]> = [
    ["swiglu", activation("swiglu"), (x) => x * sigmoid(x)],
    ["geglu", activation("geglu"), gelu],
    ["reglu", activation("reglu"), relu],
  ]

  it.each(gated)("%s equals act(gate)·value", (_name, spec, f) => {
    const value = inputs(3)
    const gate = inputs(4)
    expect(activationModule(spec).gated).toBe(true)
    const compute = activationApply(spec)
    const got = compute.apply(spec, tf.tensor1d(value), tf.tensor1d(gate)).dataSync()
    expectClose(got, value.map((v, i) => f(gate[i]!) * v), 2e-6)
    expect(() => compute.apply(spec, tf.tensor1d(value))).toThrow(/gated/)
  })

  it("a gated FFN computes (act(x·W_gate + b_gate) ⊙ (x·W_in + b_in))·W_out + b_out", () => {
    const spec = ffn("swiglu", { mult: 2 })
    const dims = { vocab: 5, width: 4, context: 3, layers: 1 }
    const decls = ffnParams(spec, dims)
    const rng = Rng.fromSeed(5)
    const values = Object.fromEntries(Object.entries(decls).map(([n, d]) => [n, Array.from({ length: d.shape.reduce((a, b) => a * b, 1) }, () => rng.nextNormal())]))
    const tensors = Object.fromEntries(Object.entries(decls).map(([n, d]) => [n, tf.tensor(values[n]!, [...d.shape])]))
    const x = Array.from({ length: 3 * 4 }, () => rng.nextNormal())
    const ctx = { dropout: (t: tf.Tensor) => t } as unknown as LayerCtx
    const got = applyFfn((n) => tensors[n]!, tf.tensor3d(x, [1, 3, 4]), spec, ctx).dataSync()
    const hidden = ffnHidden(spec, 4)
    const affine = (row: number[], w: number[], b: number[], cols: number) =>
      Array.from({ length: cols }, (_, j) => row.reduce((s, v, i) => s + v * w[i * cols + j]!, b[j]!))
    for (let t = 0; t < 3; t++) {
      const row = x.slice(4 * t, 4 * t + 4)
      const gate = affine(row, values["w_gate"]!, values["b_gate"]!, hidden)
      const value = affine(row, values["w_in"]!, values["b_in"]!, hidden)
      const inner = value.map((v, i) => v * gate[i]! * sigmoid(gate[i]!))
      expectClose(got.slice(4 * t, 4 * t + 4), affine(inner, values["w_out"]!, values["b_out"]!, 4), 1e-5)
    }
  })
})

describe("gated FFN width", () => {
  it.each([128, 256, 384, 512, 768])("GLU variants match the ungated FFN's parameters within 1%% at width %i", (width) => {
    const dims = { vocab: 10, width, context: 8, layers: 1 }
    const count = (act: ActivationTag, bias: boolean) =>
      Object.values(ffnParams(ffn(act, { bias }), dims)).reduce((s, d) => s + d.shape.reduce((a, b) => a * b, 1), 0)
    for (const bias of [true, false]) {
      const base = count("relu", bias)
      for (const act of ["swiglu", "geglu", "reglu"] as const) {
        expect(ffnHidden(ffn(act), width) % 8).toBe(0)
        expect(Math.abs(count(act, bias) / base - 1)).toBeLessThan(0.01)
      }
    }
  })
})

describe.each(Object.keys(activationKinds) as ActivationTag[])("activation %s in a decoder", (kind) => {
  it("is causal and its parameters are counted", () => {
    const spec = decoder({
      vocab: 30,
      width: 16,
      context: 10,
      layers: depth(2, block({ attention: attention("full", { heads: 4 }), ffn: ffn(kind), norm: norm("layer") })),
    })
    const m = compile(spec)
    expect(m.counts.total).toBe(paramCounts(spec).total)
    const p = m.init(11)
    const a = [5, 3, 8, 1, 9, 2, 7, 4, 6, 0]
    const la = m.apply(p, tf.tensor2d([a], [1, 10], "int32")).arraySync()[0]!
    for (const t of [0, 4, 8]) {
      const lb = m.apply(p, tf.tensor2d([a.map((x, i) => (i > t ? (x + 7) % 30 : x))], [1, 10], "int32")).arraySync()[0]!
      for (let s = 0; s <= t; s++) for (let v = 0; v < 30; v++) expect(Math.abs(la[s]![v]! - lb[s]![v]!)).toBeLessThan(1e-6)
      expect(Math.max(...la[t + 1]!.map((x, v) => Math.abs(x - lb[t + 1]![v]!)))).toBeGreaterThan(1e-5)
    }
    tf.dispose(Object.values(p))
  })
})
