import * as tf from "@tensorflow/tfjs"
import { NodeServices } from "@effect/platform-node"
import { Effect, Exit, Layer } from "effect"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import type { RunSpec } from "../../src/experiment/define.js"
import { expandRuns, loadExperiment } from "../../src/experiment/load.js"
import { compile } from "../../src/model/index.js"
import { runAt } from "../../src/experiment/run-ref.js"
import { fromRun } from "../../src/experiment/warm-start/index.js"
import { distill, gradual, heads, magnitude, neurons } from "../../src/index.js"
import type { PruneMethod } from "../../src/experiment/prune/methods/index.js"
import { trainOrPrune } from "../../src/prune/run.js"
import { checkSources } from "../../src/prune/source.js"
import { ProgressSink } from "../../src/io/progress.js"
import { decodeSafetensors } from "../../src/train/safetensors.js"
import { snapshot } from "../files.js"
import { syntheticData, tinyRun, crashingAfter } from "../train/fixtures.js"

/**
 * Pruned runs end to end on a tiny model and synthetic data: the source is only read, masked
 * weights stay exactly zero through the fine-tune and through a crash and resume (which ends
 * byte-identical to an uninterrupted run, masks included), a one-shot run evaluates and
 * replays from its spec.json, and a source that changed since is refused.
 */
beforeAll(async () => {
  await tf.setBackend("cpu")
})

const quiet = Layer.succeed(ProgressSink, { isTTY: false, columns: () => 80, write: () => {}, now: () => performance.now() })
const provide = <A, E>(effect: Effect.Effect<A, E, any>) => Effect.runPromiseExit(Effect.scoped(effect).pipe(Effect.provide(Layer.merge(NodeServices.layer, quiet))) as Effect.Effect<A, E>)
const tmp = () => mkdtempSync(join(tmpdir(), "prune-test-"))
const options = (out: string) => ({ out, fresh: false, backend: { name: "cpu", detail: "test" }, resumeCommand: "(test)" })
const errorOf = (exit: Exit.Exit<unknown, unknown>): string => {
  if (Exit.isSuccess(exit)) throw new Error("expected a failure")
  const failure = exit.cause.reasons.find((r) => r._tag === "Fail")
  return failure && "error" in failure ? (failure.error as { message: string }).message : String(exit.cause)
}
const ok = (exit: Exit.Exit<unknown, unknown>) => expect(Exit.isSuccess(exit), Exit.isFailure(exit) ? errorOf(exit) : "").toBe(true)


const tensors = (dir: string, file: string) => {
  const r = Effect.runSync(decodeSafetensors(readFileSync(join(dir, "checkpoint", file)), file))
  return r.tensors as Record<string, { shape: readonly number[]; data: Float32Array }>
}
const bytes = (dir: string, file: string) => readFileSync(join(dir, "checkpoint", file))

const sourceRun = tinyRun({ steps: 6 })
let source = ""

const pruneRun = (method: PruneMethod, steps: number, dir = source): RunSpec => ({
  ...sourceRun,
  experiment: "test-prune",
  variant: method.kind,
  training: { ...sourceRun.training, budget: { steps }, checkpoint: { every: 2 } },
  prune: { source: { experiment: "test", variant: "base", seed: 1, dir }, method },
})


/** Every weight a mask removes is exactly +0 in the checkpoint; returns how many each mask removes, by weight. */
const maskedAreZero = (dir: string): Record<string, number> => {
  const masks = tensors(dir, "masks.safetensors")
  const model = tensors(dir, "model.safetensors")
  return Object.fromEntries(
    Object.entries(masks).map(([name, m]) => {
      let removed = 0
      m.data.forEach((keep, i) => {
        if (keep === 0) {
          expect(Object.is(model[name]!.data[i], 0), `${name}[${i}]`).toBe(true)
          removed++
        }
      })
      return [name, removed]
    }),
  )
}

/** round(s·n) of every prunable matrix of the model. */
const asked = (dir: string, sparsity: number): Record<string, number> =>
  Object.fromEntries(Object.entries(tensors(dir, "masks.safetensors")).map(([name, m]) => [name, Math.round(sparsity * m.data.length)]))

beforeAll(async () => {
  source = tmp()
  ok(await provide(trainOrPrune(sourceRun, syntheticData(), options(source))))
})

describe("pruned runs", () => {
  it("magnitude pruning with a fine-tune: masked weights stay exactly zero, the others train, the source is untouched", async () => {
    const before = snapshot(source)
    const out = tmp()
    const tensorsBefore = tf.memory().numTensors
    ok(await provide(trainOrPrune(pruneRun(magnitude({ scope: "layer", sparsity: 0.5 }), 6), syntheticData(), options(out))))
    expect(tf.memory().numTensors).toBe(tensorsBefore)
    expect(maskedAreZero(out)).toEqual(asked(out, 0.5))
    const summary = JSON.parse(readFileSync(join(out, "summary.json"), "utf8"))
    expect(summary.steps).toBe(6)
    expect(summary.pruning.prunableSparsity).toBe(0.5)
    expect(Object.values(summary.pruning.tensors)).toEqual(Object.values(summary.pruning.tensors).map(() => 0.5))
    expect(summary.pruning.sourceTokens).toBe(JSON.parse(readFileSync(join(source, "summary.json"), "utf8")).tokensTrained)
    // The kept weights moved in the fine-tune.
    const src = tensors(source, "model.safetensors")
    const tuned = tensors(out, "model.safetensors")
    const name = "blocks.0.1.ffn.w_in"
    expect(tuned[name]!.data.some((x, i) => x !== 0 && x !== src[name]!.data[i])).toBe(true)
    expect(snapshot(source)).toEqual(before)
  })

  it("gradual pruning: a crash and resume ends byte-identical to an uninterrupted run, masks included", async () => {
    const run = pruneRun(gradual({ sparsity: 0.6, every: 2 }), 8)
    const straight = tmp()
    ok(await provide(trainOrPrune(run, syntheticData(), options(straight))))
    const resumed = tmp()
    // 2 micro-batches a step: the stream fails inside step 4, after the checkpoint at step 2; step 3 is saved as it stops.
    expect(errorOf(await provide(trainOrPrune(run, crashingAfter(syntheticData(), 7), options(resumed))))).toMatch(/simulated crash/)
    expect(JSON.parse(readFileSync(join(resumed, "checkpoint", "state.json"), "utf8")).step).toBe(3)
    // At step 2 of 8 the cubic schedule (every 2 steps to step 6) is at 0.6·(1 − (2/3)³) = 0.4222.
    expect(maskedAreZero(resumed)).toEqual(asked(resumed, 0.6 * (1 - (2 / 3) ** 3)))
    ok(await provide(trainOrPrune(run, syntheticData(), options(resumed))))
    for (const file of ["model.safetensors", "optimizer.safetensors", "masks.safetensors"]) expect(bytes(resumed, file).equals(bytes(straight, file)), file).toBe(true)
    expect(maskedAreZero(resumed)).toEqual(asked(resumed, 0.6))
  })

  it("a one-shot pruned run is an ordinary run directory: its spec.json describes its checkpoint and replays to the same weights", async () => {
    const out = tmp()
    ok(await provide(trainOrPrune(pruneRun(heads({ remove: 0.5, by: "importance", calibration: { batches: 2 } }), 0), syntheticData(), options(out))))
    const summary = JSON.parse(readFileSync(join(out, "summary.json"), "utf8"))
    expect(summary.steps).toBe(0)
    expect(summary.pruning.kept).toEqual({ "blocks.0.0.attention": [expect.any(Number)] })
    // One head of 8 of width 16: 4·16·8 + 3·8 = 536 of the source's non-embedding parameters.
    expect(summary.params.nonEmbedding).toBe(summary.pruning.sourceParams.nonEmbedding - 536)
    expect(summary.pruning.sparsity).toBeCloseTo(536 / summary.pruning.sourceParams.nonEmbedding, 12)
    const spec = JSON.parse(readFileSync(join(out, "spec.json"), "utf8"))
    expect(spec.model.layers.block.layers[0].body[1]).toMatchObject({ heads: 1, headDim: 8 })
    expect(spec.prune.source).toMatchObject({ dir: source, specHash: expect.any(String), checkpoint: expect.stringMatching(/^[0-9a-f]{64}$/), step: 6 })

    const model = tensors(out, "model.safetensors")
    const table = compile(spec.model).table
    expect(Object.keys(model).sort()).toEqual(table.map((p) => p.name).sort())
    for (const p of table) expect(model[p.name]!.shape).toEqual(p.decl.shape)

    const replayed = tmp()
    const replay = await provide(
      Effect.gen(function* () {
        const [run] = yield* expandRuns(yield* loadExperiment(join(out, "spec.json")), {})
        yield* checkSources([run!])
        return yield* trainOrPrune(run!, syntheticData(), options(replayed))
      }),
    )
    ok(replay)
    expect(bytes(replayed, "model.safetensors").equals(bytes(out, "model.safetensors"))).toBe(true)
  })

  it("refuses a spec.json that prunes a run not yet pruned from but declares another model than the source's", async () => {
    const dir = tmp()
    const file = join(dir, "spec.json")
    const declared = (model: RunSpec["model"]) => writeFileSync(file, JSON.stringify({ ...pruneRun(magnitude({ sparsity: 0.5 }), 0), model }))
    declared({ ...sourceRun.model, dropout: 0.1 })
    const message = errorOf(await provide(loadExperiment(file)))
    expect(message).toMatch(new RegExp(`at \\["model"\\]: a run that prunes ${source} starts from that run's model, and this is another[\\s\\S]*dropout: 0 → 0\\.1`))
    // The source's own model is what it prunes.
    declared(sourceRun.model)
    ok(await provide(loadExperiment(file)))
  })

  it("prune-then-distill: a fine-tune with the source as teacher trains exactly what distilling the one-shot pruned model as a warm-started student does", async () => {
    const method = neurons({ remove: 0.5, by: "taylor", calibration: { batches: 2 } })
    const objective = distill({ teacher: runAt(source), temperature: 2, alpha: 0 })
    const oneShot = tmp()
    ok(await provide(trainOrPrune(pruneRun(method, 0), syntheticData(), options(oneShot))))
    const distilled = tmp()
    const tensorsBefore = tf.memory().numTensors
    ok(await provide(trainOrPrune({ ...pruneRun(method, 6), objective }, syntheticData(), options(distilled))))
    expect(tf.memory().numTensors).toBe(tensorsBefore)
    // The reference: the one-shot pruned model started from its run and distilled like any student.
    const pruned = JSON.parse(readFileSync(join(oneShot, "spec.json"), "utf8")) as RunSpec
    const student: RunSpec = { ...pruneRun(method, 6), experiment: "student", model: pruned.model, prune: undefined, init: fromRun(runAt(oneShot)), objective } as RunSpec
    const reference = tmp()
    ok(await provide(trainOrPrune(JSON.parse(JSON.stringify(student)) as RunSpec, syntheticData(), options(reference))))
    expect(bytes(distilled, "model.safetensors").equals(bytes(reference, "model.safetensors"))).toBe(true)
    // Not what the plain fine-tune trains.
    const plain = tmp()
    ok(await provide(trainOrPrune(pruneRun(method, 6), syntheticData(), options(plain))))
    expect(bytes(distilled, "model.safetensors").equals(bytes(plain, "model.safetensors"))).toBe(false)
    const spec = JSON.parse(readFileSync(join(distilled, "spec.json"), "utf8"))
    expect(spec.objective).toMatchObject({ kind: "distill", alpha: 0, teacher: { run: source, fingerprint: expect.stringMatching(/^[0-9a-f]{16}$/) } })
    expect(spec.model).toEqual(pruned.model)
  })

  it("refuses to replay a pruned run whose source has changed since", async () => {
    const src = tmp()
    ok(await provide(trainOrPrune(sourceRun, syntheticData(), options(src))))
    const out = tmp()
    ok(await provide(trainOrPrune(pruneRun(magnitude({ sparsity: 0.25 }), 0, src), syntheticData(), options(out))))
    // The source is deleted by hand and trained again, differently, in place.
    rmSync(src, { recursive: true })
    ok(await provide(trainOrPrune({ ...sourceRun, seed: 2 }, syntheticData(), options(src))))
    const replay = (effect: (run: RunSpec) => Effect.Effect<unknown, { message: string }, any>) =>
      provide(
        Effect.gen(function* () {
          const [run] = yield* expandRuns(yield* loadExperiment(join(out, "spec.json")), {})
          return yield* effect(run!)
        }),
      )
    const expected = new RegExp(`the source run ${src} has changed since this run was pruned from it \\(specHash .*, recorded .*; checkpoint [0-9a-f]{64}, recorded [0-9a-f]{64}\\)`)
    expect(errorOf(await replay((run) => checkSources([run])))).toMatch(expected)
    expect(errorOf(await replay((run) => trainOrPrune(run, syntheticData(), options(tmp()))))).toMatch(expected)
  })
})
