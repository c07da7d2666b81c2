import { Console, Effect, FileSystem, Option, Path } from "effect"
import { hashSpec } from "../../dsl/hash.js"
import type { RunSpec } from "../experiment/define.js"
import type { Summary } from "../experiment/summary.js"
import { ioReason } from "../errors/io-error.js"
import { makeDirectory } from "../io/make-directory.js"
import { lockRunDir } from "../io/run-lock.js"
import { type Checkpoint, loadCheckpoint } from "./checkpoint.js"
import { recordRun } from "./finish.js"
import { trainingIdentity } from "./identity.js"
import type { RunData } from "./run-data.js"
import { RunError, runMemoryProblem, type RunOptions } from "./run-options.js"
import { prepareSources, type Sources } from "./sources.js"
import { inspectTarget } from "./target.js"

/**
 * The first phase of a run: its identity (its sources opened and fingerprinted), the checks
 * that can fail before anything is written (vocabulary, memory, what the directory holds),
 * then the directory and its lock, and the checkpoint to resume from. A finished run ends here.
 */
export type Opened =
  | { readonly kind: "finished"; readonly summary: Summary }
  | {
      readonly kind: "train"
      /** The run with its sources' fingerprints, as spec.json records it. */
      readonly run: RunSpec
      readonly specHash: string
      readonly sources: Sources
      readonly checkpoint: Option.Option<Checkpoint>
    }

/** A finished run's summary as it stands: running it again trains and writes nothing but a missing ledger record. */
const finishedRun = (run: RunSpec, data: RunData, options: RunOptions) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const dir = options.out
    const file = path.join(dir, "summary.json")
    const text = yield* fs.readFileString(file).pipe(Effect.mapError((e) => new RunError({ problem: `cannot read ${file}: ${ioReason(e)}` })))
    const summary = yield* Effect.try({ try: () => JSON.parse(text) as Summary, catch: (e) => new RunError({ problem: `${file}: not valid JSON (${(e as Error).message})` }) })
    if (typeof summary?.valLoss !== "number" || typeof summary.valBpb !== "number") return yield* new RunError({ problem: `${file}: expected a finished run's summary (valLoss and valBpb numbers)` })
    yield* Console.error(`${dir}: already finished; nothing to train (its summary.json is kept)`)
    if (yield* recordRun(run, summary, data, options)) yield* Console.error(`${dir}: the ledger had no record of this finished run; added it`)
    return summary
  })

export const openTraining = (requested: RunSpec, data: RunData, options: RunOptions) =>
  Effect.gen(function* () {
    const dir = options.out
    const fail = (problem: string) => new RunError({ problem })
    // A teacher or warm-start run is opened and checked first; its fingerprint joins the spec.
    const sources = yield* prepareSources(requested, data).pipe(Effect.mapError((e) => fail(e.message)))
    const run = sources.run
    if (data.tokenizer.vocabSize !== run.model.vocab) return yield* fail(`the model's vocab ${run.model.vocab} differs from the tokenizer's ${data.tokenizer.vocabSize}`)
    // Every check that can fail happens before anything is written: the sizes fit this machine,
    // the directory may take this run, and no other process trains into it.
    const memory = runMemoryProblem(run, options.memoryLimit)
    if (memory !== undefined) return yield* fail(`${dir}: ${memory}`)
    const before = yield* inspectTarget(dir, run, options.fresh)
    if (before.kind === "refused") return yield* fail(before.problem)
    yield* makeDirectory(dir).pipe(Effect.mapError((e) => fail(`cannot write to the output directory ${dir}: ${ioReason(e)}`)))
    yield* lockRunDir(dir, (message) => Console.error(message))
    // Again under the lock, which also keeps a finished run's missing ledger record from being added twice.
    const target = yield* inspectTarget(dir, run, options.fresh)
    if (target.kind === "refused") return yield* fail(target.problem)
    if (target.kind === "finished") return { kind: "finished", summary: yield* finishedRun(run, data, options) } satisfies Opened
    const checkpoint = target.kind === "resume" ? yield* loadCheckpoint(dir) : Option.none()
    return { kind: "train", run, specHash: hashSpec(trainingIdentity(run)), sources, checkpoint } satisfies Opened
  })
