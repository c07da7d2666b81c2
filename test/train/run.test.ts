import * as tf from "@tensorflow/tfjs"
import { NodeServices } from "@effect/platform-node"
import { Effect, Exit, Layer } from "effect"
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { ProgressSink } from "../../src/io/progress.js"
import { trainRun } from "../../src/train/run.js"
import type { RunOptions } from "../../src/train/run-options.js"
import { dropoutSeed } from "../../src/train/steps.js"
import type { RunData } from "../../src/train/run-data.js"
import type { RunSpec } from "../../src/experiment/define.js"
import { attention, block, depth, depthCosts, earlyExit, ffn, posenc, stack } from "../../dsl/index.js"
import { layerDropPolicy } from "../../dsl/kinds/depth/layer-drop.js"
import { dropped } from "../../src/depth/layer-drop.js"
import { describeNative } from "../backend/native-suite.js"
import { syntheticData, tinyRun, crashingAfter } from "./fixtures.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const quiet = Layer.succeed(ProgressSink, { isTTY: false, columns: () => 80, write: () => {}, now: () => performance.now() })
const options = (out: string, fresh = false): RunOptions => ({ out, fresh, backend: { name: "cpu", detail: "test" }, resumeCommand: "(test)" })
const runIn = (run: RunSpec, data: RunData, opts: RunOptions) =>
  Effect.runPromiseExit(Effect.scoped(trainRun(run, data, opts)).pipe(Effect.provide(Layer.merge(NodeServices.layer, quiet))))
const tmp = () => mkdtempSync(join(tmpdir(), "run-test-"))
const bytes = (dir: string, file: string) => readFileSync(join(dir, "checkpoint", file))
const errorOf = (exit: Exit.Exit<unknown, { message: string }>): string => {
  if (Exit.isSuccess(exit)) throw new Error("expected the run to fail")
  const failure = exit.cause.reasons.find((r) => r._tag === "Fail")
  return failure && "error" in failure ? (failure.error as { message: string }).message : String(exit.cause)
}


/**
 * Trains `run` straight through, and again with a crash after the ninth batch (past the
 * checkpoint of step 4) and a resume; the two end with byte-identical weights and optimiser
 * state. Returns both directories.
 */
const crashResumeMatchesStraight = async (run: Parameters<typeof runIn>[0]): Promise<{ straight: string; resumed: string }> => {
  const straight = tmp()
  expect(Exit.isSuccess(await runIn(run, syntheticData(), options(straight)))).toBe(true)
  const resumed = tmp()
  expect(errorOf((await runIn(run, crashingAfter(syntheticData(), 9), options(resumed))) as never)).toMatch(/simulated crash/)
  expect(JSON.parse(readFileSync(join(resumed, "checkpoint", "state.json"), "utf8")).step).toBe(4)
  expect(Exit.isSuccess(await runIn(run, syntheticData(), options(resumed)))).toBe(true)
  expect(bytes(resumed, "model.safetensors").equals(bytes(straight, "model.safetensors"))).toBe(true)
  expect(bytes(resumed, "optimizer.safetensors").equals(bytes(straight, "optimizer.safetensors"))).toBe(true)
  return { straight, resumed }
}

describe("training run", () => {
  it("resumes exactly: a crash after a checkpoint, then a resume, ends byte-identical to an uninterrupted run", async () => {
    const run = tinyRun({ steps: 8, every: 4, dropout: 0.1 })
    const straight = tmp()
    expect(Exit.isSuccess(await runIn(run, syntheticData(), options(straight)))).toBe(true)
    const resumed = tmp()
    // 2 micro-batches per step: the stream fails in the middle of step 6, after the checkpoint
    // at step 4; the run saves step 5 as it stops.
    const crashed = await runIn(run, crashingAfter(syntheticData(), 11), options(resumed))
    expect(errorOf(crashed as never)).toMatch(/simulated crash/)
    const state = JSON.parse(readFileSync(join(resumed, "checkpoint", "state.json"), "utf8"))
    expect(state.step).toBe(5)
    expect(Exit.isSuccess(await runIn(run, syntheticData(), options(resumed)))).toBe(true)
    expect(bytes(resumed, "model.safetensors").equals(bytes(straight, "model.safetensors"))).toBe(true)
    expect(bytes(resumed, "optimizer.safetensors").equals(bytes(straight, "optimizer.safetensors"))).toBe(true)
    const rows = (dir: string) => readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l))
    expect(rows(resumed).map((r) => [r.step, r.loss])).toEqual(rows(straight).map((r) => [r.step, r.loss]))
  })

  it("a stack of different blocks trains, resumes byte-identically after a crash, evaluates and samples", async () => {
    const layers = stack([
      block({ attention: attention("sliding-window", { heads: 3, headDim: 4, window: 3, dropout: 0.1 }), ffn: ffn("relu", { hidden: 24 }) }),
      block({ attention: attention("full", { heads: 1, headDim: 12 }), ffn: ffn("swiglu", { hidden: 20, dropout: 0.1 }) }),
    ])
    const run = tinyRun({ steps: 6, every: 3, dropout: 0.1, posenc: posenc("alibi"), layers })
    const { resumed } = await crashResumeMatchesStraight(run)
    const summary = JSON.parse(readFileSync(join(resumed, "summary.json"), "utf8"))
    expect(Number.isFinite(summary.valLoss)).toBe(true)
    expect(summary.sample.startsWith("abc")).toBe(true)
    expect(Object.keys(summary.lengths)).toEqual(["16"])
  })

  it("checkpointed blocks: a crash and a resume end byte-identical, with the weights of the run that keeps every activation", async () => {
    const layers = depth(2, block({ attention: attention("full", { heads: 2, dropout: 0.1 }), ffn: ffn("gelu", { dropout: 0.1 }), dropout: 0.1 }))
    const plain = tinyRun({ steps: 6, every: 3, dropout: 0.1, layers })
    const run = { ...plain, model: { ...plain.model, checkpoint: "blocks" as const } }
    const { straight } = await crashResumeMatchesStraight(run)
    const kept = tmp()
    expect(Exit.isSuccess(await runIn(plain, syntheticData(), options(kept)))).toBe(true)
    expect(bytes(straight, "model.safetensors").equals(bytes(kept, "model.safetensors"))).toBe(true)
  })

  it("LayerDrop: a crash and a resume end byte-identical, and the summary counts the blocks its seeded draws ran", async () => {
    const policy = layerDropPolicy.make({ rate: 0.5 })
    const layers = depth(3, block({ attention: attention("full", { heads: 2 }), ffn: ffn("gelu", { dropout: 0.1 }) }), policy)
    const run = tinyRun({ steps: 6, every: 3, layers })
    const { straight, resumed } = await crashResumeMatchesStraight(run)
    // Blocks run per micro-batch, from the draws of (seed, step, micro-batch, block); 4 × 8 positions each.
    const costs = depthCosts(run.model)
    let flops = 0
    let blocksRun = 0
    for (let step = 1; step <= 6; step++) {
      for (let micro = 0; micro < 2; micro++) {
        const kept = [0, 1, 2].filter((i) => !dropped(policy, dropoutSeed(run.seed, step, micro), i))
        blocksRun += kept.length
        flops += costs.base + costs.head + kept.reduce((s, i) => s + costs.blocks[i]!.full, 0)
      }
    }
    expect(blocksRun).toBeLessThan(36)
    for (const dir of [straight, resumed]) {
      const summary = JSON.parse(readFileSync(join(dir, "summary.json"), "utf8"))
      expect(summary.spent.training.blocksPerToken).toBeCloseTo(blocksRun / 12, 12)
      expect(summary.spent.training.flopsPerToken).toBeCloseTo((3 * flops) / 12, 6)
      expect(summary.spent.eval).toEqual({ flopsPerToken: summary.flopsPerToken.forward, blocksPerToken: 3 })
    }
  })

  it("early exit: the summary's evaluation spends at most the nominal FLOPs, training the exit heads of every block", async () => {
    const layers = depth(2, block({ attention: attention("full", { heads: 2 }), ffn: ffn("gelu") }), earlyExit({ threshold: 0.05 }))
    const out = tmp()
    expect(Exit.isSuccess(await runIn(tinyRun({ steps: 4, layers }), syntheticData(), options(out)))).toBe(true)
    const summary = JSON.parse(readFileSync(join(out, "summary.json"), "utf8"))
    // Training computes both blocks and both heads: the nominal count (which includes one check head).
    expect(summary.spent.training.flopsPerToken).toBeCloseTo(summary.flopsPerToken.training, 6)
    expect(summary.spent.eval.flopsPerToken).toBeLessThanOrEqual(summary.flopsPerToken.forward)
    expect(summary.spent.eval.blocksPerToken).toBeGreaterThanOrEqual(1)
    expect(summary.spent.eval.blocksPerToken).toBeLessThanOrEqual(2)
  })

  it("keeps the tensor count flat over hundreds of steps with evaluations", async () => {
    const out = tmp()
    const before = tf.memory().numTensors
    const exit = await runIn(tinyRun({ steps: 200, evalEvery: 25, every: 100 }), syntheticData(), options(out))
    expect(Exit.isSuccess(exit)).toBe(true)
    const rows = readFileSync(join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l))
    expect(rows).toHaveLength(200)
    expect(rows.filter((r) => r.valLoss !== undefined)).toHaveLength(8)
    expect(new Set(rows.map((r) => r.tensors)).size).toBe(1)
    expect(tf.memory().numTensors).toBe(before)
    // It learned something: the lexicon makes the corpus far more predictable than uniform (ln 17 ≈ 2.83).
    const summary = JSON.parse(readFileSync(join(out, "summary.json"), "utf8"))
    expect(summary.valLoss).toBeLessThan(2.0)
    expect(summary.params.total).toBeGreaterThan(0)
    expect(summary.sample.startsWith("abc")).toBe(true)
    expect([summary.backend, summary.backendDetail]).toEqual(["cpu", "test"])
    // Learned positions cannot represent length 16 > context 8, so no length figure is made.
    expect(summary.lengths).toEqual({})
  })

  it("evaluates at longer lengths when the position scheme allows it", async () => {
    const out = tmp()
    const exit = await runIn(tinyRun({ steps: 4, posenc: posenc("rope") }), syntheticData(), options(out))
    expect(Exit.isSuccess(exit)).toBe(true)
    const summary = JSON.parse(readFileSync(join(out, "summary.json"), "utf8"))
    expect(Object.keys(summary.lengths)).toEqual(["16"])
    expect(summary.lengths["16"].bpb).toBeCloseTo(summary.lengths["16"].loss / Math.LN2, 10)
  })

  it("stops on a non-finite loss and keeps the last good checkpoint", async () => {
    const out = tmp()
    const exit = await runIn(tinyRun({ steps: 20, lr: 1e30, every: 1 }), syntheticData(), options(out))
    const message = errorOf(exit as never)
    expect(message).toMatch(/the loss became (NaN|Infinity|-Infinity) .*at step \d+; the run stopped\. The last good checkpoint \(step \d+\) is kept/)
    const failedAt = Number(/at step (\d+)/.exec(message)![1])
    const state = JSON.parse(readFileSync(join(out, "checkpoint", "state.json"), "utf8"))
    expect(state.step).toBe(failedAt - 1)
    expect(existsSync(join(out, "summary.json"))).toBe(false)
  })

  it("refuses a checkpoint of a different spec and leaves the run untouched", async () => {
    const out = tmp()
    expect(Exit.isSuccess(await runIn(tinyRun({ steps: 3, every: 1 }), syntheticData(), options(out)))).toBe(true)
    const model = bytes(out, "model.safetensors")
    const spec = readFileSync(join(out, "spec.json"))
    const finished = await runIn(tinyRun({ steps: 3, every: 1, lr: 0.5 }), syntheticData(), options(out))
    expect(errorOf(finished as never)).toMatch(/holds a finished run of another spec[\s\S]*never overwritten[\s\S]*optimizer\.lr/)
    // Unfinished, it may be discarded with --fresh.
    rmSync(join(out, "summary.json"))
    const exit = await runIn(tinyRun({ steps: 3, every: 1, lr: 0.5 }), syntheticData(), options(out))
    expect(errorOf(exit as never)).toMatch(/holds a checkpoint of a different run[\s\S]*optimizer\.lr[\s\S]*--fresh/)
    expect(bytes(out, "model.safetensors").equals(model)).toBe(true)
    expect(readFileSync(join(out, "spec.json")).equals(spec)).toBe(true)
  })

  it("lists what differs from the run the checkpoint was trained from, not from a spec.json of another run", async () => {
    const out = tmp()
    expect(Exit.isSuccess(await runIn(tinyRun({ steps: 3, every: 1 }), syntheticData(), options(out)))).toBe(true)
    rmSync(join(out, "summary.json"))
    // A run started there with --fresh that stopped before its first checkpoint left its spec.json.
    const other = tinyRun({ steps: 3, every: 1, lr: 0.5 })
    writeFileSync(join(out, "spec.json"), JSON.stringify(other, null, 2))
    const message = errorOf((await runIn(other, syntheticData(), options(out))) as never)
    expect(message).toMatch(/holds a checkpoint of a different run[\s\S]*Changes from the spec it was trained from:\n.*optimizer\.lr.* → [\s\S]*--fresh/)
    expect(message).not.toContain("(no changes)")
    // A checkpoint that does not record its spec (written before it did) is not described by the wrong one.
    const statePath = join(out, "checkpoint", "state.json")
    const state = JSON.parse(readFileSync(statePath, "utf8"))
    delete state.extra.identity
    writeFileSync(statePath, JSON.stringify(state))
    const unknown = errorOf((await runIn(other, syntheticData(), options(out))) as never)
    expect(unknown).toMatch(/What it was trained from is unknown/)
    expect(unknown).not.toContain("(no changes)")
  })

  it("reports a corrupt checkpoint by file and keeps it", async () => {
    const out = tmp()
    expect(Exit.isSuccess(await runIn(tinyRun({ steps: 2, every: 1 }), syntheticData(), options(out)))).toBe(true)
    const file = join(out, "checkpoint", "model.safetensors")
    const corrupt = Buffer.from(readFileSync(file))
    corrupt[corrupt.length - 1] ^= 0xff
    writeFileSync(file, corrupt)
    // Unfinished, so a run again resumes from the checkpoint (a finished run is not read again).
    rmSync(join(out, "summary.json"))
    const exit = await runIn(tinyRun({ steps: 2, every: 1 }), syntheticData(), options(out))
    expect(errorOf(exit as never)).toMatch(/model\.safetensors.*sha256/)
    expect(readFileSync(file).equals(corrupt)).toBe(true)
  })

  it("fails before training when the output directory cannot be written", async () => {
    const file = join(tmp(), "a-file")
    writeFileSync(file, "x")
    const exit = await runIn(tinyRun({ steps: 2 }), syntheticData(), options(join(file, "run")))
    expect(errorOf(exit as never)).toMatch(/cannot write to the output directory .*a-file\/run/)
    expect(statSync(file).size).toBe(1)
  })
})

describeNative("training run on the native backend", () => {
  it("records a step's peak memory: at least every parameter's gradient at once, and none on cpu", async () => {
    const cpuOut = tmp()
    expect(Exit.isSuccess(await runIn(tinyRun({ steps: 3 }), syntheticData(), options(cpuOut)))).toBe(true)
    expect(JSON.parse(readFileSync(join(cpuOut, "summary.json"), "utf8")).stepPeakBytes).toBeUndefined()
    await tf.setBackend("native")
    try {
      const out = tmp()
      const exit = await runIn(tinyRun({ steps: 3 }), syntheticData(), { ...options(out), backend: { name: "native", detail: "test" } })
      expect(Exit.isSuccess(exit)).toBe(true)
      const summary = JSON.parse(readFileSync(join(out, "summary.json"), "utf8"))
      expect(summary.stepPeakBytes).toBeGreaterThanOrEqual(4 * summary.params.total)
      expect(summary.stepPeakBytes).toBeLessThan(2 ** 24)
    } finally {
      await tf.setBackend("cpu")
    }
  })
})
