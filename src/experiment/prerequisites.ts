import { Console, Data, Effect, FileSystem, Path } from "effect"
import type { DataError } from "../data/errors.js"
import type { LockError } from "../io/run-lock.js"
import type { ProgressSink } from "../report/progress.js"
import type { CheckpointError } from "../train/checkpoint.js"
import type { SourceRecord } from "../prune/declare.js"
import { trainOrPrune } from "../prune/run.js"
import type { PruneError } from "../prune/source.js"
import type { RunError, RunOptions } from "../train/run.js"
import { type SourceRole, sourceSpecProblems } from "../train/sources.js"
import { loadRunData } from "./data.js"
import { type RunSpec, withTokenizerVocab } from "./define.js"
import { type ExperimentError, expandRuns, loadExperiment } from "./load.js"
import { commandOf, recipeOf, type RunRef, runDirOf } from "./run-ref.js"
import { resolveRecordedDir } from "./run-path.js"

/**
 * The runs an experiment's runs read (distillation teachers, warm-start sources, the runs
 * pruned variants prune), made ready before any of them trains. Each must hold a finished run
 * or, when it does not exist yet, name the experiment that makes it; then it is trained
 * first, saying so. An unfinished one is refused (it may be training elsewhere): the message
 * says how to finish it. Every source is checked against its readers from the specs alone
 * first, so a mismatch stops the command before anything trains or is written.
 */
export class SourceRunError extends Data.TaggedError("SourceRunError")<{ readonly problem: string }> {
  override get message(): string {
    return this.problem
  }
}

/** A pruned run's source as a reference; a replayed spec.json's (which recorded the weights it pruned) is checked by checkSources alone. */
const pruneSourceOf = (record: SourceRecord): RunRef => ({ run: resolveRecordedDir(record.dir), experiment: record.experiment, variant: record.variant, seed: record.seed })

const sourcesOf = (run: RunSpec): Array<{ readonly ref: RunRef; readonly role: SourceRole }> => [
  ...(run.objective?.kind === "distill" ? [{ ref: run.objective.teacher, role: "teacher" as const }] : []),
  ...(run.init ? [{ ref: run.init.from, role: "warm-start source" as const }] : []),
  ...(run.prune && run.prune.source.checkpoint === undefined ? [{ ref: pruneSourceOf(run.prune.source), role: "pruning source" as const }] : []),
]

interface Pending {
  readonly dir: string
  readonly role: SourceRole
  readonly ref: RunRef
  /** The run its experiment makes. */
  readonly run: RunSpec
}

/** Every source's spec checked against its readers; the unfinished ones, with the run that makes each. */
const plan = (runs: ReadonlyArray<RunSpec>) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const exists = (p: string) => fs.exists(p).pipe(Effect.orElseSucceed(() => false))
    const problems: string[] = []
    const pending = new Map<string, Pending>()
    for (const run of runs)
      for (const { ref, role } of sourcesOf(run)) {
        const dir = runDirOf(ref)
        const where = `${run.variant} (seed ${run.seed}): ${role} ${dir}`
        const finished = yield* exists(path.join(dir, "summary.json"))
        const specPath = path.join(dir, "spec.json")
        const started = !finished && ((yield* exists(specPath)) || (yield* exists(path.join(dir, "checkpoint"))))
        if (started) {
          const finish = ref.experiment === undefined ? "" : ` with ${commandOf(ref)}`
          problems.push(`${where}: the run is unfinished (no summary.json; it may be training elsewhere); finish it first${finish}`)
          continue
        }
        const recipe = finished || ref.experiment === undefined ? undefined : yield* recipeRun(ref).pipe(Effect.mapError((e) => new SourceRunError({ problem: `${where}: ${e.message}` })))
        if (!finished && recipe === undefined) {
          problems.push(`${where}: no run there (no spec.json); train it first, or name the experiment that makes it (runOf)`)
          continue
        }
        const spec = finished
          ? yield* loadExperiment(specPath).pipe(
              Effect.flatMap((l) => expandRuns(l, {})),
              Effect.map(([r]) => r!),
              Effect.mapError((e) => new SourceRunError({ problem: `${where}: ${e.message}` })),
            )
          : recipe!
        problems.push(...sourceSpecProblems(run, role, spec, dir).map((p) => `${run.variant} (seed ${run.seed}): ${p}`))
        if (!finished) pending.set(dir, { dir, role, ref, run: recipe! })
      }
    if (problems.length > 0) return yield* new SourceRunError({ problem: [...new Set(problems)].join("\n") })
    return [...pending.values()]
  })

/** The one run a reference's experiment makes (its variant and seed when it has several). */
const recipeRun = (ref: RunRef) =>
  Effect.gen(function* () {
    const loaded = yield* loadExperiment(ref.experiment!)
    const runs = yield* expandRuns(loaded, { ...(ref.variant !== undefined ? { variant: ref.variant } : {}), ...(ref.seed !== undefined ? { seed: ref.seed } : {}) })
    if (runs.length !== 1)
      return yield* new SourceRunError({
        problem: `experiment ${ref.experiment} makes ${runs.length} runs (${runs.map((r) => `${r.variant}/seed${r.seed}`).join(", ")}); name the variant and seed: runOf("${ref.experiment}", { variant, seed })`,
      })
    return runs[0]!
  })

/** Checks every source of `runs`, then trains the missing ones (their own sources first). */
export const trainSources = (
  runs: ReadonlyArray<RunSpec>,
  options: Pick<RunOptions, "backend" | "resumeCommand" | "ledger" | "memoryLimit">,
): Effect.Effect<void, SourceRunError | ExperimentError | DataError | RunError | CheckpointError | LockError | PruneError, FileSystem.FileSystem | Path.Path | ProgressSink> =>
  Effect.gen(function* () {
    for (const p of yield* plan(runs)) {
      yield* trainSources([p.run], options)
      yield* Console.error(`\n${p.role} ${p.dir} does not exist; training it first (${recipeOf(p.ref)})`)
      const data = yield* loadRunData(p.run.training.data)
      // A source may itself be a pruned run.
      yield* Effect.scoped(trainOrPrune(withTokenizerVocab(p.run, data.tokenizer.vocabSize), data, { ...options, out: p.dir, fresh: false, resumeCommand: commandOf(p.ref)! }))
    }
  })
