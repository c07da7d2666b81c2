import * as tf from "@tensorflow/tfjs"
import { NodeServices } from "@effect/platform-node"
import { Effect, Exit, Layer } from "effect"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import type { RunSpec } from "../../src/experiment/define.js"
import { ProgressSink } from "../../src/io/progress.js"
import { trainRun } from "../../src/train/run.js"
import { syntheticData, tinyRun } from "./fixtures.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

/**
 * A budget with a target (`bpb`) stops at the first periodic evaluation that reaches it, and
 * the summary says when: checked against the same run trained without the target, whose
 * evaluations are the same numbers (the run is deterministic), so where the target is first
 * reached is read off its metrics.
 */
const quiet = Layer.succeed(ProgressSink, { isTTY: false, columns: () => 80, write: () => {}, now: () => performance.now() })
const effect = <A, E>(e: Effect.Effect<A, E, any>) => Effect.runPromiseExit(Effect.scoped(e).pipe(Effect.provide(Layer.merge(NodeServices.layer, quiet))) as Effect.Effect<A, E>)
const train = async (run: RunSpec, dir = mkdtempSync(join(tmpdir(), "target-test-"))) => {
  const exit = await effect(trainRun(run, syntheticData(), { out: dir, fresh: false, backend: { name: "cpu", detail: "test" }, resumeCommand: "(test)" }))
  if (Exit.isFailure(exit)) throw new Error(String(exit.cause))
  return { dir, summary: exit.value }
}
const rows = (dir: string) =>
  readFileSync(join(dir, "metrics.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { step: number; tokens: number; valBpb?: number })
const withTarget = (run: RunSpec, bpb: number): RunSpec => ({ ...run, training: { ...run.training, budget: { ...run.training.budget, bpb } } })

describe("a budget with a target bits per byte", { timeout: 120_000 }, () => {
  const plain = tinyRun({ steps: 12, evalEvery: 2, lr: 3e-3 })

  it("stops at the first evaluation at or below the target and records when", async () => {
    const reference = rows((await train(plain)).dir).filter((r) => r.valBpb !== undefined)
    // A target first met at a middle evaluation: the best of the first half.
    const best = Math.min(...reference.slice(0, 3).map((r) => r.valBpb!))
    const first = reference.find((r) => r.valBpb! <= best)!
    expect(first.step).toBeLessThan(12)
    const { dir, summary } = await train(withTarget(plain, best))
    expect(summary.target).toMatchObject({ bpb: best, reached: { step: first.step, valBpb: first.valBpb, tokens: first.tokens } })
    expect(summary.target!.reached!.trainSeconds).toBeGreaterThan(0)
    expect(summary.target!.reached!.trainingFlops).toBeCloseTo(3 * summary.flopsPerToken.forward * first.tokens, -3)
    expect(summary).toMatchObject({ steps: first.step, tokensTrained: first.tokens, valBpb: first.valBpb })
    expect(rows(dir).at(-1)!.step).toBe(first.step)

    // The reached target is in the checkpoint: a run whose summary was lost finishes there, training no further.
    rmSync(join(dir, "summary.json"))
    const again = await train(withTarget(plain, best), dir)
    expect(again.summary).toMatchObject({ steps: first.step, target: summary.target })
    expect(rows(dir).at(-1)!.step).toBe(first.step)
  })

  it("spends the whole budget when the target is not reached, and says so", async () => {
    const { summary } = await train(withTarget(plain, 1e-6))
    expect(summary.steps).toBe(12)
    expect(summary.target).toEqual({ bpb: 1e-6, reached: null })
  })
})
