import * as tf from "@tensorflow/tfjs"
import { NodeServices } from "@effect/platform-node"
import { Effect, Exit, Layer } from "effect"
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { hostname, tmpdir } from "node:os"
import { join } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { attention, block, depth, earlyExit, ffn, keepBlocks, keptParamSource, layerDrop, stack } from "../../dsl/index.js"
import { exitsAt, keptBlocks, parseBlocks } from "../../src/orchestration/depth-variants.js"
import { evaluate } from "../../src/eval/evaluate.js"
import { deriveRun } from "../../src/orchestration/derive-run.js"
import type { RunSpec } from "../../src/experiment/define.js"
import { compile } from "../../src/model/compile.js"
import { ProgressSink } from "../../src/io/progress.js"
import { loadCheckpoint } from "../../src/train/checkpoint.js"
import { trainRun } from "../../src/train/run.js"
import { muon } from "../../src/experiment/optimizer/spec.js"
import { constant } from "../../src/schedule/index.js"
import { syntheticData, tinyRun } from "../train/fixtures.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

/** Runs derived from trained ones: some blocks kept, or another exit threshold; they evaluate and summarise like any run. */
const quiet = Layer.succeed(ProgressSink, { isTTY: false, columns: () => 80, write: () => {}, now: () => performance.now() })
const effect = <A, E>(e: Effect.Effect<A, E, any>) => Effect.runPromiseExit(Effect.scoped(e).pipe(Effect.provide(Layer.merge(NodeServices.layer, quiet))) as Effect.Effect<A, E>)
const tmp = () => mkdtempSync(join(tmpdir(), "derive-test-"))
const train = async (run: RunSpec): Promise<string> => {
  const dir = tmp()
  const exit = await effect(trainRun(run, syntheticData(), { out: dir, fresh: false, backend: { name: "cpu", detail: "test" }, resumeCommand: "(test)" }))
  expect(Exit.isSuccess(exit)).toBe(true)
  return dir
}
const failure = (exit: Exit.Exit<unknown, unknown>): string => {
  if (Exit.isSuccess(exit)) throw new Error("expected a failure")
  return String(exit.cause)
}
const checkpointOf = async (dir: string) => {
  const exit = await effect(loadCheckpoint(dir))
  if (Exit.isFailure(exit) || exit.value._tag === "None") throw new Error(`no checkpoint in ${dir}`)
  return exit.value.value
}

describe("derived runs", () => {
  const layers = stack(
    [0, 1, 2, 3].map((i) => block({ attention: attention("full", { heads: 2 }), ffn: ffn("gelu", { hidden: 16 + 8 * i }) })),
    layerDrop({ rate: 0.3 }),
  )

  it("keeps every other block of a LayerDrop run: renamed tensors, no policy, the same loss as the model cut in memory, and a summary", async () => {
    const source = await train(tinyRun({ steps: 4, layers }))
    const out = join(tmp(), "pruned")
    const exit = await effect(deriveRun(source, out, (run) => keptBlocks(run.model, parseBlocks("every-other")!, "every-other")))
    expect(Exit.isSuccess(exit)).toBe(true)
    const spec = JSON.parse(readFileSync(join(out, "spec.json"), "utf8")) as RunSpec
    expect(spec.variant).toBe("base, blocks every-other")
    expect(spec.model.layers).toEqual(keepBlocks({ ...spec.model, layers }, [0, 2]).layers)
    expect("policy" in spec.model.layers).toBe(false)
    const [from, to] = [await checkpointOf(source), await checkpointOf(out)]
    expect(Buffer.from(to.params["blocks.1.1.ffn.w_in"]!.data.buffer).equals(Buffer.from(from.params["blocks.2.1.ffn.w_in"]!.data.buffer))).toBe(true)
    expect(to.params["blocks.1.1.ffn.w_in"]!.shape).toEqual([16, 32])
    expect(Object.keys(to.params).some((k) => k.startsWith("blocks.2."))).toBe(false)
    expect(to.state.step).toBe(4)

    // The derived checkpoint evaluates exactly as the source's tensors under the cut model.
    const data = syntheticData()
    const batches = () => data.validBatches(4, 8, 256)
    const derived = compile(spec.model)
    const tensors = (ck: typeof to, rename: (n: string) => string) =>
      Object.fromEntries(derived.table.map((p) => [p.name, tf.tensor(ck.params[rename(p.name)]!.data, [...p.decl.shape])]))
    const fromDerived = tensors(to, (n) => n)
    const fromSource = tensors(from, keptParamSource(JSON.parse(readFileSync(join(source, "spec.json"), "utf8")).model, [0, 2]))
    const a = evaluate(derived, fromDerived, batches(), 1)
    const b = evaluate(derived, fromSource, batches(), 1)
    expect(a.loss).toBe(b.loss)
    expect(a.blocksPerToken).toBe(2)
    tf.dispose([...Object.values(fromDerived), ...Object.values(fromSource)])

    // Replaying its spec.json finds a finished run: evaluation and summary, no training.
    const summaryExit = await effect(trainRun(spec, data, { out, fresh: false, backend: { name: "cpu", detail: "test" }, resumeCommand: "(test)" }))
    expect(Exit.isSuccess(summaryExit)).toBe(true)
    const summary = JSON.parse(readFileSync(join(out, "summary.json"), "utf8"))
    expect(summary.valLoss).toBe(a.loss)
    expect(summary.spent.eval.blocksPerToken).toBe(2)
    expect(Buffer.from((await checkpointOf(out)).params["embed.tokens"]!.data.buffer).equals(Buffer.from(to.params["embed.tokens"]!.data.buffer))).toBe(true)
  })

  it("carries a Muon run's momentum for the kept blocks, so replaying the derived run finds it finished", async () => {
    const base = tinyRun({ steps: 2, layers })
    const source = await train({ ...base, training: { ...base.training, optimizer: muon({ lr: constant(0.02), adamw: { lr: constant(3e-3) } }) } })
    const out = join(tmp(), "pruned")
    expect(Exit.isSuccess(await effect(deriveRun(source, out, (run) => keptBlocks(run.model, parseBlocks("every-other")!, "every-other"))))).toBe(true)
    const [from, to] = [await checkpointOf(source), await checkpointOf(out)]
    expect(Buffer.from(to.optimizer["momentum.blocks.1.1.ffn.w_in"]!.data.buffer).equals(Buffer.from(from.optimizer["momentum.blocks.2.1.ffn.w_in"]!.data.buffer))).toBe(true)
    const spec = JSON.parse(readFileSync(join(out, "spec.json"), "utf8")) as RunSpec
    expect(Exit.isSuccess(await effect(trainRun(spec, syntheticData(), { out, fresh: false, backend: { name: "cpu", detail: "test" }, resumeCommand: "(test)" })))).toBe(true)
    expect(existsSync(join(out, "summary.json"))).toBe(true)
  })

  it("sets another exit threshold, and refuses what cannot be derived", async () => {
    const exits = await train(tinyRun({ steps: 2, layers: depth(2, block({ attention: attention("full", { heads: 2 }), ffn: ffn("gelu") }), earlyExit({ threshold: 0.9 })) }))
    const out = join(tmp(), "exits")
    expect(Exit.isSuccess(await effect(deriveRun(exits, out, (run) => exitsAt(run.model, { threshold: 0.4, measure: "saturation" }))))).toBe(true)
    const spec = JSON.parse(readFileSync(join(out, "spec.json"), "utf8")) as RunSpec
    expect(spec.model.layers.policy).toEqual(earlyExit({ threshold: 0.4, measure: "saturation" }))
    expect(spec.variant).toBe("base, exit saturation>0.4")
    // Cutting blocks would drop the exits, a different model: refused, nothing written.
    const cut = join(tmp(), "cut")
    expect(failure(await effect(deriveRun(exits, cut, (run) => keptBlocks(run.model, [0], "0"))))).toMatch(
      /--keep-blocks: at \["layers","policy"\]: early-exit\(.*\): a token whose softmax confidence exceeds 0.9 leaves before the last block; the kept blocks would run without it/,
    )
    expect(existsSync(cut)).toBe(false)
    expect(failure(await effect(deriveRun(exits, join(tmp(), "x"), (run) => exitsAt(run.model, { threshold: 3 }))))).toMatch(
      /the derived model is invalid:\nat \["layers","policy","threshold"\]: the softmax measure lies in \[0, 1\]/,
    )
    const plain = await train(tinyRun({ steps: 1 }))
    expect(failure(await effect(deriveRun(plain, join(tmp(), "x"), (run) => exitsAt(run.model, { threshold: 0.5 }))))).toMatch(/the model has no depth policy, not early exit/)
    expect(failure(await effect(deriveRun(plain, join(tmp(), "x"), (run) => keptBlocks(run.model, [3], "3"))))).toMatch(/block indices 3 are not among the 1 blocks/)
    // Never over a directory that holds something.
    const full = tmp()
    writeFileSync(join(full, "summary.json"), "{}")
    expect(failure(await effect(deriveRun(exits, full, (run) => exitsAt(run.model, { threshold: 0.5 }))))).toMatch(/is not empty; choose a new directory/)
    expect(readFileSync(join(full, "summary.json"), "utf8")).toBe("{}")
    // Nor from a run that is still training (this process as its trainer, holding its lock).
    writeFileSync(join(exits, "run.lock"), JSON.stringify({ pid: process.pid, host: hostname(), started: "2026-01-01T00:00:00.000Z", command: "exp smoke" }))
    const busy = join(tmp(), "busy")
    expect(failure(await effect(deriveRun(exits, busy, (run) => exitsAt(run.model, { threshold: 0.5 }))))).toMatch(/the run is still training \(pid \d+ on .*\); derive from it once it has finished/)
    expect(existsSync(busy)).toBe(false)
    expect(parseBlocks("0,x")).toBeUndefined()
  })
})
