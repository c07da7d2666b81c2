import * as tf from "@tensorflow/tfjs"
import { NodeServices } from "@effect/platform-node"
import { Effect, Exit, Layer, Schema } from "effect"
import { mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { crossEntropy, describeObjective, ObjectiveSchema } from "../../src/experiment/objective/spec.js"
import { ProgressSink } from "../../src/io/progress.js"
import { crossEntropy as crossEntropyLoss } from "../../src/model/loss.js"
import { withZLoss, zLoss } from "../../src/objective/z-loss.js"
import { Rng } from "../../src/random/rng.js"
import { trainRun } from "../../src/train/run.js"
import { syntheticData, tinyRun } from "../train/fixtures.js"

/**
 * PaLM's z-loss against a float64 computation and central differences of it, added to
 * cross-entropy without changing it, and in a run: trained on, not validated on.
 */
beforeAll(async () => {
  await tf.setBackend("cpu")
})

const [n, v] = [7, 19]
const rng = Rng.fromSeed(4)
// Logits away from 0 on average, so log Z is far from 0 and the term has a gradient to check.
const logits = Float64Array.from({ length: n * v }, () => Math.fround(1 + 2 * rng.nextNormal()))
const targets = Array.from({ length: n }, () => rng.nextInt(v))
const weights: number[] = Array.from({ length: n }, (_, i) => (i % 3 === 2 ? 0 : 1))
const coefficient = 0.3

const lse64 = (row: ArrayLike<number>): number => {
  const m = Math.max(...Array.from(row))
  return m + Math.log(Array.from(row).reduce((a, x) => a + Math.exp(x - m), 0))
}
/** coefficient · Σ w·(log Z)² / Σ w, in float64. */
const z64 = (x: Float64Array): number => {
  const wsum = weights.reduce((a, b) => a + b, 0)
  return weights.reduce((a, w, i) => a + (coefficient * w * lse64(x.subarray(i * v, (i + 1) * v)) ** 2) / wsum, 0)
}

const valueAndGrad = (f: (x: tf.Tensor2D) => tf.Scalar) => {
  const { value, grad } = tf.tidy(() => tf.valueAndGrad((x: tf.Tensor) => f(x as tf.Tensor2D))(tf.tensor2d(Float32Array.from(logits), [n, v])))
  const result = { value: value.dataSync()[0]!, grad: Float64Array.from(grad.dataSync()) }
  tf.dispose([value, grad])
  return result
}

describe("z-loss", () => {
  it("equals the float64 computation, and its gradient equals central differences of it; padded rows get none", () => {
    const before = tf.memory().numTensors
    const { value, grad } = valueAndGrad((x) => zLoss(x, tf.tensor1d(weights), coefficient))
    const want = z64(logits)
    expect(want).toBeGreaterThan(1)
    expect(Math.abs(value - want)).toBeLessThan(2e-6 * want)
    const h = 1e-5
    let worst = 0
    let largest = 0
    for (let j = 0; j < logits.length; j++) {
      const up = Float64Array.from(logits)
      const down = Float64Array.from(logits)
      up[j]! += h
      down[j]! -= h
      const fd = (z64(up) - z64(down)) / (2 * h)
      worst = Math.max(worst, Math.abs(grad[j]! - fd))
      largest = Math.max(largest, Math.abs(fd))
    }
    expect(largest).toBeGreaterThan(1e-2)
    expect(worst).toBeLessThan(2e-4 * largest)
    for (let i = 2; i < n; i += 3) expect(grad.subarray(i * v, (i + 1) * v).every((g) => g === 0)).toBe(true)
    expect(tf.memory().numTensors).toBe(before)
  })

  it("adds to cross-entropy and leaves it as it is: value and gradient are the two summed", () => {
    const args = () => [tf.tensor1d(targets, "int32"), tf.tensor1d(weights)] as const
    const ce = valueAndGrad((x) => crossEntropyLoss(x, ...args()))
    const z = valueAndGrad((x) => zLoss(x, args()[1], coefficient))
    const both = valueAndGrad((x) => withZLoss(crossEntropyLoss, coefficient)(x, ...args()))
    expect(both.value).toBeCloseTo(ce.value + z.value, 5)
    both.grad.forEach((g, j) => expect(g).toBeCloseTo(ce.grad[j]! + z.grad[j]!, 6))
    // No coefficient: the term itself.
    expect(withZLoss(crossEntropyLoss, undefined)).toBe(crossEntropyLoss)
  })

  it("is an option of cross-entropy that a spec.json records, refused at the field when not positive; plain cross-entropy stays the implicit default", () => {
    const decode = (o: object) => Schema.decodeUnknownSync(ObjectiveSchema)(o, { errors: "all" })
    expect(decode(JSON.parse(JSON.stringify(crossEntropy({ zLoss: 1e-4 }))))).toEqual({ kind: "cross-entropy", zLoss: 1e-4 })
    expect(() => decode({ kind: "cross-entropy", zLoss: 0 })).toThrow(/\["zLoss"\]/)
    expect(describeObjective(crossEntropy({ zLoss: 1e-4 }))).toBe("cross-entropy, z-loss 0.0001")
    expect(crossEntropy()).toEqual({ kind: "cross-entropy" })
  })

  it("in a run, the training loss includes it and the validation loss does not", async () => {
    const quiet = Layer.succeed(ProgressSink, { isTTY: false, columns: () => 80, write: () => {}, now: () => performance.now() })
    const firstRow = async (z: number | undefined) => {
      const base = tinyRun({ steps: 1, lr: 1e-5, evalEvery: 1 })
      const run = z === undefined ? base : { ...base, objective: crossEntropy({ zLoss: z }) }
      const out = mkdtempSync(join(tmpdir(), "z-loss-"))
      const exit = await Effect.runPromiseExit(
        Effect.scoped(trainRun(run, syntheticData(), { out, fresh: false, backend: { name: "cpu", detail: "test" }, resumeCommand: "(test)" })).pipe(Effect.provide(Layer.merge(NodeServices.layer, quiet))),
      )
      expect(Exit.isSuccess(exit), String(Exit.isFailure(exit) && exit.cause)).toBe(true)
      const spec = JSON.parse(readFileSync(join(out, "spec.json"), "utf8")) as { objective?: unknown }
      const row = JSON.parse(readFileSync(join(out, "metrics.jsonl"), "utf8").split("\n").find((l) => l.includes('"valLoss"'))!) as { loss: number; valLoss: number }
      return { spec, row }
    }
    const plain = await firstRow(undefined)
    const withZ = await firstRow(1)
    expect(plain.spec.objective).toBeUndefined()
    expect(withZ.spec.objective).toEqual({ kind: "cross-entropy", zLoss: 1 })
    // Near initialisation log Z ≈ ln 17 (uniform over 17 ids): the term adds about (ln 17)² ≈ 8 to the training loss.
    expect(withZ.row.loss - plain.row.loss).toBeGreaterThan(0.8 * Math.log(17) ** 2)
    // At a tiny rate one update barely moves the weights: the validation losses agree, without the term.
    expect(Math.abs(withZ.row.valLoss - plain.row.valLoss)).toBeLessThan(0.01)
  })
})
