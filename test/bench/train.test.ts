import * as tf from "@tensorflow/tfjs"
import { beforeAll, describe, expect, it } from "vitest"
import { optimizersOf } from "../../bench/train.js"
import { trainingSteps } from "../../bench/train-step.js"
import { gpt2 } from "../../dsl/index.js"
import { UsageError } from "../../src/cli/boundary.js"
import { compile } from "../../src/model/index.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
  await tf.ready()
})

describe("the training benchmark's optimisers", () => {
  it("--optimizer takes a comma list of adamw and muon and refuses any other name with the usage line", () => {
    expect(optimizersOf("adamw")).toEqual(["adamw"])
    expect(optimizersOf("muon,adamw")).toEqual(["muon", "adamw"])
    for (const bad of ["sgd", "adamw,", "toString"]) {
      const thrown = (() => {
        try {
          optimizersOf(bad)
        } catch (e) {
          return e
        }
      })()
      expect(thrown).toBeInstanceOf(UsageError)
      expect((thrown as UsageError).message).toMatch(/^--optimizer: ".*" is not one of adamw, muon[^]*\nusage: npm run bench -- train /)
    }
  })

  it("runs Muon beside AdamW on the same tokens: the same first loss, then each its own, and no tensors left behind", () => {
    const model = compile(gpt2({ vocab: 17, width: 8, context: 8, layers: 1, heads: 2, activation: "relu" }))
    const runs = (["adamw", "muon"] as const).map((o) => ({ o, ...trainingSteps(model, 2, 1, o) }))
    const losses = runs.map(({ step }) => [step(), step()])
    const tensors = tf.memory().numTensors
    for (const { step } of runs) for (let i = 0; i < 20; i++) step()
    expect(tf.memory().numTensors).toBe(tensors)
    // Same seed, same tokens, same first loss; the optimisers then part ways.
    expect(losses[0]![0]).toBe(losses[1]![0])
    expect(losses[0]![1]).not.toBe(losses[1]![1])
    for (const { dispose } of runs) dispose()
  })
})
