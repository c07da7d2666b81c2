import * as tf from "@tensorflow/tfjs"
import { beforeAll, expect, it } from "vitest"
import { attention } from "../../dsl/index.js"
import type { Dims } from "../../dsl/kind.js"
import { linear, projectQkv, splitHeads } from "../../src/attention/projection.js"
import { ctxOf, randomParams, viewOf } from "./helpers.js"

const dims: Dims = { vocab: 11, width: 32, context: 16, layers: 1 }
// Head widths 16 (scale 1/4, a power of two), 8 and 32 (scales that are not).
const cases = [2, 4, 1].map((heads) => attention("full", { heads }))

beforeAll(async () => {
  await tf.setBackend("cpu")
})

it("q is the scaled projection, scaling the weight and bias when the activations are larger: the same bits for a power-of-two scale, float32 rounding otherwise", () => {
  for (const spec of cases) {
    const params = randomParams(spec, dims, 3)
    const p = viewOf(params)
    const headDim = dims.width / spec.heads
    for (const [b, t] of [[3, 16], [1, 1]] as const) {
      const x = tf.randomNormal([b, t, dims.width], 0, 1, "float32", 7)
      const [q] = projectQkv(p, x as tf.Tensor3D, spec, ctxOf(dims, 0))
      const want = splitHeads(tf.mul(linear(p, x.reshape([b * t, dims.width]) as tf.Tensor2D, "wq", "bq", true), 1 / Math.sqrt(headDim)), b, t, spec.heads)
      const got = q.dataSync()
      const expected = want.dataSync()
      const exact = Number.isInteger(Math.log2(headDim) / 2)
      for (let i = 0; i < expected.length; i++) {
        if (exact) expect(got[i]).toBe(expected[i])
        else expect(Math.abs(got[i]! - expected[i]!)).toBeLessThanOrEqual(1e-6 * Math.abs(expected[i]!) + 1e-7)
      }
    }
  }
})

it("a training step's q projection multiplies no activation-sized tensor, forward or backward", async () => {
  const spec = cases[0]!
  const params = randomParams(spec, dims, 3)
  const p = viewOf(params)
  const [b, t] = [4, 16]
  const x = tf.randomNormal([b, t, dims.width], 0, 1, "float32", 7) as tf.Tensor3D
  const { kernels } = await tf.profile(() =>
    tf.dispose(tf.tidy(() => tf.grads((w: tf.Tensor, bias: tf.Tensor) => tf.sum(projectQkv((n) => (n === "wq" ? w : n === "bq" ? bias : p(n)), x, spec, ctxOf(dims, 0))[0]))([p("wq"), p("bq")]))),
  )
  // The scalings: products with a scalar (the loss's own gradient multiplies by ones).
  const multiplies = kernels.filter((k) => k.name === "Multiply" && k.inputShapes.some((s) => s?.length === 0)).map((k) => k.outputShapes[0]!.reduce((m, n) => m * n, 1))
  expect(multiplies.length).toBeGreaterThan(0)
  expect(Math.max(...multiplies)).toBeLessThanOrEqual(dims.width * dims.width)
})
