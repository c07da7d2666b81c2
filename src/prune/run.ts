import * as tf from "@tensorflow/tfjs"
import { Effect, type FileSystem, Option, type Path, type Scope } from "effect"
import { canonicalJson } from "../../dsl/hash.js"
import { paramCounts } from "../../dsl/params.js"
import type { RunSpec } from "../experiment/define.js"
import { resolveRecordedDir } from "../experiment/run-path.js"
import { compile } from "../model/compile.js"
import type { Params } from "../model/init.js"
import { Rng } from "../random/rng.js"
import type { LockError } from "../io/run-lock.js"
import type { ProgressSink } from "../io/progress.js"
import { type CheckpointError, loadCheckpoint } from "../train/checkpoint.js"
import { trainRun } from "../train/run.js"
import type { RunError, RunOptions } from "../train/run-options.js"
import type { Summary } from "../experiment/summary.js"
import { totalSteps } from "../experiment/define.js"
import type { RunData } from "../train/run-data.js"
import type { Pruned } from "./compute/compute.js"
import { runMethod } from "./compute/index.js"
import type { PruneRecord } from "../experiment/prune/declare.js"
import { maskKeeper } from "./masks.js"
import { methodModule } from "../experiment/prune/methods/index.js"
import { hasFinetune, identityProblem, inspectSource, PruneError, type FinishedSource, unfinishedProblem } from "./source.js"

/**
 * A pruned run: open the finished source, prune its weights with the method, then train the
 * result like any run (zero steps when one-shot), starting from the pruned weights and, for
 * unstructured methods, holding the masked ones at zero. The source is only read.
 */

type Requirements = FileSystem.FileSystem | Path.Path | ProgressSink | Scope.Scope
type Failure = RunError | CheckpointError | LockError | PruneError

/** Trains a run, or prunes one when its spec says so. */
export const trainOrPrune = (run: RunSpec, data: RunData, options: RunOptions): Effect.Effect<Summary, Failure, Requirements> =>
  run.prune === undefined ? trainRun(run, data, options) : prunedRun(run, run.prune, data, options)

/** The source, finished (`npm run exp` trains a missing one first: runs/prerequisites.ts). */
const finishedSource = (record: PruneRecord): Effect.Effect<FinishedSource, PruneError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function* () {
    const state = yield* inspectSource(resolveRecordedDir(record.source.dir))
    if (state.kind === "finished") return state.source
    if (state.kind === "unfinished") return yield* new PruneError({ problem: unfinishedProblem(record.source, state.step) })
    return yield* new PruneError({
      problem: `the source run ${record.source.dir} does not exist; ${record.source.checkpoint !== undefined ? "this spec.json was pruned from it" : `train it first with npm run exp ${record.source.experiment}`}`,
    })
  })

const calibrationSeed = (seed: number): number => Rng.derive(seed, "prune/calibration").nextUint32()

/** Fraction of the entries of the named weights that are exactly zero, each and all together. */
const zeros = (params: Params, names: ReadonlyArray<string>) => {
  const perTensor: Record<string, number> = {}
  let total = 0
  let zero = 0
  for (const name of names) {
    const data = params[name]!.dataSync()
    let z = 0
    for (let i = 0; i < data.length; i++) if (data[i] === 0) z++
    perTensor[name] = z / data.length
    total += data.length
    zero += z
  }
  return { perTensor, total, zero }
}

const prunedRun = (run: RunSpec, record: PruneRecord, data: RunData, options: RunOptions): Effect.Effect<Summary, Failure, Requirements> =>
  Effect.gen(function* () {
    const fail = (problem: string) => new PruneError({ problem: `${run.experiment}/${run.variant} seed ${run.seed}: ${problem}` })
    const source = yield* finishedSource(record)
    const changed = identityProblem(record.source, source.identity)
    if (changed !== undefined) return yield* fail(changed)
    if (source.summary.tokenizerHash !== data.tokenizer.hash) return yield* fail(`the source run ${record.source.dir} used another tokenizer (${source.summary.tokenizer}) than this run's data`)
    const method = methodModule(record.method)
    const issues = method.check(record.method, source.run.model, hasFinetune(run))
    if (issues.length > 0) return yield* fail(issues.map((i) => `at ${JSON.stringify(["prune", "method", ...i.path])}: ${i.message}`).join("\n"))

    const pruned: Pruned = yield* Effect.scoped(
      Effect.gen(function* () {
        const checkpoint = yield* loadCheckpoint(source.dir)
        if (Option.isNone(checkpoint)) return yield* fail(`the source run ${record.source.dir} lost its checkpoint`)
        const weights = checkpoint.value.params
        const model = compile(source.run.model)
        const params = yield* Effect.acquireRelease(
          Effect.sync(() => Object.fromEntries(model.table.map((p) => [p.name, tf.tensor(weights[p.name]!.data, [...p.decl.shape], "float32")]))),
          (ps) => Effect.sync(() => tf.dispose(Object.values(ps))),
        )
        const calibration = (n: number) => {
          const stream = data.trainStream(run.training.batch, model.spec.context, calibrationSeed(run.seed))
          return Array.from({ length: n }, () => stream.next())
        }
        return yield* Effect.try({
          try: () => runMethod(record.method, { model, params, weights, calibration, seed: run.seed, steps: totalSteps(run) }),
          catch: (e) => fail(`pruning failed: ${(e as Error).message}`),
        })
      }),
    )

    const identified: PruneRecord = { source: { ...record.source, ...source.identity }, method: record.method }
    if (record.source.checkpoint !== undefined && canonicalJson(pruned.model) !== canonicalJson(run.model)) {
      return yield* fail("pruning the source now gives another model than this spec.json records")
    }
    const final: RunSpec = { ...run, model: pruned.model, prune: identified }
    const masks = pruned.masks === undefined ? undefined : yield* Effect.acquireRelease(Effect.sync(() => maskKeeper(pruned.masks!)), (k) => Effect.sync(() => k.dispose()))
    const sourceCounts = paramCounts(source.run.model)
    const prunedCounts = paramCounts(pruned.model)
    const masked = pruned.masks === undefined ? [] : Object.keys(pruned.masks.initial)
    const summary = (params: Params) => {
      const z = zeros(params, masked)
      return {
        pruning: {
          source: record.source.dir,
          method: method.label(record.method),
          structure: method.structure,
          sourceTokens: source.summary.tokensTrained,
          sourceParams: sourceCounts,
          // The share of the source's non-embedding parameters gone: removed with heads and neurons, or held at zero.
          sparsity: (sourceCounts.nonEmbedding - prunedCounts.nonEmbedding + z.zero) / sourceCounts.nonEmbedding,
          ...(masked.length > 0 ? { prunableSparsity: z.zero / z.total, tensors: z.perTensor } : {}),
          ...pruned.details,
        },
      }
    }
    return yield* trainRun(final, data, { ...options, start: { params: pruned.params, ...(masks === undefined ? {} : { masks }), summary } })
  })
