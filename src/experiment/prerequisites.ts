import { Console, Data, Effect, FileSystem, Path } from "effect"
import type { DataError } from "../data/errors.js"
import type { LockError } from "../io/run-lock.js"
import type { ProgressSink } from "../report/progress.js"
import type { CheckpointError } from "../train/checkpoint.js"
import { type RunError, type RunOptions, trainRun } from "../train/run.js"
import { type SourceRole, sourceSpecProblems } from "../train/sources.js"
import { loadRunData } from "./data.js"
import { type RunSpec, withTokenizerVocab } from "./define.js"
import { type ExperimentError, expandRuns, loadExperiment } from "./load.js"
import { recipeOf, type RunRef, runDirOf } from "./run-ref.js"

/**
 * The runs an experiment's runs read (distillation teachers, warm-start sources), made ready
 * before any of them trains. Each must hold a finished run or name the experiment that
 * makes it; then it is trained first, saying so (and resumed, if it was interrupted). Every
 * source is checked against its readers from the specs alone first, so a mismatch stops the
 * command before anything trains or is written.
 */
export class SourceRunError extends Data.TaggedError("SourceRunError")<{ readonly problem: string }> {
  override get message(): string {
    return this.problem
  }
}

const sourcesOf = (run: RunSpec): Array<{ readonly ref: RunRef; readonly role: SourceRole }> => [
  ...(run.objective?.kind === "distill" ? [{ ref: run.objective.teacher, role: "teacher" as const }] : []),
  ...(run.init ? [{ ref: run.init.from, role: "warm-start source" as const }] : []),
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
        const recipe = finished || ref.experiment === undefined ? undefined : yield* recipeRun(ref).pipe(Effect.mapError((e) => new SourceRunError({ problem: `${where}: ${e.message}` })))
        if (!finished && recipe === undefined) {
          problems.push(`${where}: ${(yield* exists(specPath)) ? "the run is unfinished (no summary.json)" : "no run there (no spec.json)"}; train it first, or name the experiment that makes it (runOf)`)
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

/** Checks every source of `runs`, then trains the unfinished ones (their own sources first). */
export const trainSources = (
  runs: ReadonlyArray<RunSpec>,
  options: Pick<RunOptions, "backend" | "resumeCommand" | "ledger" | "memoryLimit">,
): Effect.Effect<void, SourceRunError | ExperimentError | DataError | RunError | CheckpointError | LockError, FileSystem.FileSystem | Path.Path | ProgressSink> =>
  Effect.gen(function* () {
    for (const p of yield* plan(runs)) {
      yield* trainSources([p.run], options)
      yield* Console.error(`\n${p.role} ${p.dir} has no finished run; training it first (${recipeOf(p.ref)})`)
      const data = yield* loadRunData(p.run.training.data)
      yield* Effect.scoped(trainRun(withTokenizerVocab(p.run, data.tokenizer.vocabSize), data, { ...options, out: p.dir, fresh: false }))
    }
  })
