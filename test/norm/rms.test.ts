import * as tf from "@tensorflow/tfjs"
import { beforeAll, describe, expect, it } from "vitest"
import { norm, normKinds, normModule, type NormTag } from "../../dsl/kinds/norm/index.js"
import { normApply } from "../../src/norm/index.js"
import { attention, block, decoder, depth, ffn } from "../../dsl/index.js"
import { compile } from "../../src/model/index.js"
import { Rng } from "../../src/random/rng.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

describe("rms norm", () => {
  const dims = { vocab: 10, width: 6, context: 4, layers: 1 }

  it("has a gain and no bias", () => {
    const spec = norm("rms")
    expect(spec).toEqual({ op: "norm", kind: "rms", eps: 1e-6 })
    expect(Object.keys(normModule(spec).params(spec, dims))).toEqual(["gain"])
  })

  it.each([1e-6, 0.5])("equals x / √(mean(x²) + eps) · g (eps %s)", (eps) => {
    const rng = Rng.fromSeed(3)
    const x = Array.from({ length: 3 * 6 }, () => 2 * rng.nextNormal())
    const gain = Array.from({ length: 6 }, () => 1 + rng.nextNormal())
    const spec = norm("rms", { eps })
    const got = normApply(spec).apply(() => tf.tensor1d(gain), tf.tensor2d(x, [3, 6]), spec).dataSync()
    for (let r = 0; r < 3; r++) {
      const row = x.slice(6 * r, 6 * r + 6)
      const rms = Math.sqrt(row.reduce((s, v) => s + v * v, 0) / 6 + eps)
      row.forEach((v, i) => expect(got[6 * r + i]!).toBeCloseTo((v / rms) * gain[i]!, 5))
    }
  })
})

describe.each(Object.keys(normKinds) as NormTag[])("norm %s in a decoder", (kind) => {
  it("is causal", () => {
    const m = compile(
      decoder({
        vocab: 30,
        width: 16,
        context: 10,
        norm: norm(kind),
        layers: depth(2, block({ attention: attention("full", { heads: 4 }), ffn: ffn("gelu"), norm: norm(kind) })),
      }),
    )
    const p = m.init(4)
    const a = [5, 3, 8, 1, 9, 2, 7, 4, 6, 0]
    const la = m.apply(p, tf.tensor2d([a], [1, 10], "int32")).arraySync()[0]!
    const lb = m.apply(p, tf.tensor2d([a.map((x, i) => (i > 4 ? (x + 7) % 30 : x))], [1, 10], "int32")).arraySync()[0]!
    for (let s = 0; s <= 4; s++) for (let v = 0; v < 30; v++) expect(Math.abs(la[s]![v]! - lb[s]![v]!)).toBeLessThan(1e-6)
    expect(Math.max(...la[5]!.map((x, v) => Math.abs(x - lb[5]![v]!)))).toBeGreaterThan(1e-5)
    tf.dispose(Object.values(p))
  })
})
