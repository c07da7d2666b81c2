import { hostname } from "node:os"
import { join } from "node:path"
import { Console, Data, Effect, FileSystem, Path } from "effect"
import type { DataError } from "../data/errors.js"
import { describeHolder, LOCK_FILE, type LockError, lockHolder, type LockHolder } from "../io/run-lock.js"
import { parseJsonl } from "../io/jsonl.js"
import type { ProgressSink } from "../io/progress.js"
import type { CheckpointError } from "../train/checkpoint.js"
import { trainOrPrune } from "../prune/run.js"
import type { PruneError } from "../prune/source.js"
import type { RunError, RunOptions } from "../train/run-options.js"
import { sourceSpecProblems } from "../train/sources.js"
import { loadRunData } from "./data.js"
import { type RunSpec, withTokenizerVocab } from "../experiment/define.js"
import { type ExperimentError, expandRuns, loadExperiment } from "../experiment/load.js"
import { runSources } from "../experiment/readers.js"
import { commandOf, recipeOf, type RunRef, runDirOf, type SourceRole } from "../experiment/run-ref.js"

/**
 * The runs an experiment's runs read (distillation teachers, warm-start sources, the runs
 * pruned variants prune), made ready before any of them trains. Each must hold a finished run
 * or, when it does not exist yet, name the experiment that makes it; then it is trained
 * first, saying so. One that another process is training (its run.lock is held: a shard of
 * the same sweep started at the same moment) is waited for, saying so and how far it has got;
 * one left unfinished with nobody training it is refused: the message says how to finish it.
 * Every source is checked against its readers from the specs alone first, so a mismatch stops
 * the command before anything trains or is written.
 */
export class SourceRunError extends Data.TaggedError("SourceRunError")<{ readonly problem: string }> {
  override get message(): string {
    return this.problem
  }
}

/** A replayed pruned run's source (which its spec.json recorded) is checked by checkSources alone. */
const sourcesOf = (run: RunSpec) => runSources(run).filter((s) => s.recorded !== true)

/** How often a source another process trains is looked at, and how often its progress is told. */
export interface Waiting {
  readonly pollMillis: number
  readonly progressMillis: number
}

const defaultWaiting: Waiting = { pollMillis: 5_000, progressMillis: 60_000 }

/** The step a run has logged last, from its metrics.jsonl. */
const lastStep = (dir: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const text = yield* fs.readFileString(path.join(dir, "metrics.jsonl")).pipe(Effect.orElseSucceed(() => ""))
    const step = parseJsonl(text).lines.map((l) => (l.value as { step?: unknown } | null)?.step).filter((s) => typeof s === "number").at(-1)
    return step === undefined ? "no step logged yet" : `at step ${step}`
  })

/**
 * Waits while another process holds a source's lock, saying which run it waits for and, now
 * and then, how far that run has got. The holder that was waited for, if any.
 */
const awaitHolder = (dir: string, role: SourceRole, waiting: Waiting) =>
  Effect.gen(function* () {
    const first = yield* lockHolder(dir)
    if (first === undefined) return undefined
    const elsewhere = first.host !== hostname() ? `; if that process has ended, delete ${join(dir, LOCK_FILE)}` : ""
    yield* Console.error(`\n${role} ${dir} is being trained by ${describeHolder(first)}; waiting for it to finish${elsewhere}`)
    const every = Math.max(1, Math.round(waiting.progressMillis / waiting.pollMillis))
    for (let polls = 1; ; polls++) {
      yield* Effect.sleep(waiting.pollMillis)
      if ((yield* lockHolder(dir)) === undefined) return first
      if (polls % every === 0) yield* Console.error(`still waiting for ${role} ${dir}: ${yield* lastStep(dir)}`)
    }
  })

/** Why a source that was waited for is not there: its trainer stopped before finishing it. */
const stoppedProblem = (where: string, holder: LockHolder, ref: RunRef) =>
  `${where}: ${describeHolder(holder)} stopped before finishing it (no summary.json); finish it with ${commandOf(ref) ?? `the command it ran (${holder.command})`}`

interface Pending {
  readonly dir: string
  readonly role: SourceRole
  readonly ref: RunRef
  /** The run its experiment makes. */
  readonly run: RunSpec
}

/**
 * Every source's spec checked against its readers; the missing ones, with the run that makes
 * each, and those another process is training (checked once they are finished).
 */
const plan = (runs: ReadonlyArray<RunSpec>, waited: ReadonlyMap<string, LockHolder>) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const exists = (p: string) => fs.exists(p).pipe(Effect.orElseSucceed(() => false))
    const problems: string[] = []
    const pending = new Map<string, Pending>()
    // Sources another process is training now.
    const busy = new Map<string, SourceRole>()
    for (const run of runs)
      for (const { ref, role } of sourcesOf(run)) {
        const dir = runDirOf(ref)
        const where = `${run.variant} (seed ${run.seed}): ${role} ${dir}`
        const finished = yield* exists(path.join(dir, "summary.json"))
        const specPath = path.join(dir, "spec.json")
        const started = !finished && ((yield* exists(specPath)) || (yield* exists(path.join(dir, "checkpoint"))))
        if (started && (yield* lockHolder(dir)) !== undefined) {
          busy.set(dir, role)
          continue
        }
        if (started) {
          const finish = ref.experiment === undefined ? "" : ` with ${commandOf(ref)}`
          const holder = waited.get(dir)
          problems.push(holder !== undefined ? stoppedProblem(where, holder, ref) : `${where}: the run is unfinished (no summary.json) and no process is training it (it failed or was interrupted); finish it first${finish}`)
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
    return { pending: [...pending.values()], busy }
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
  waiting: Waiting = defaultWaiting,
): Effect.Effect<void, SourceRunError | ExperimentError | DataError | RunError | CheckpointError | LockError | PruneError, FileSystem.FileSystem | Path.Path | ProgressSink> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const finished = (dir: string) => fs.exists(join(dir, "summary.json")).pipe(Effect.orElseSucceed(() => false))
    // Another process training a source (a shard started together with this one) finishes it first.
    const waited = new Map<string, LockHolder>()
    let planned = yield* plan(runs, waited)
    while (planned.busy.size > 0) {
      for (const [dir, role] of planned.busy) {
        const holder = yield* awaitHolder(dir, role, waiting)
        if (holder !== undefined) waited.set(dir, holder)
      }
      planned = yield* plan(runs, waited)
    }
    for (const p of planned.pending) {
      yield* trainSources([p.run], options, waiting)
      yield* Console.error(`\n${p.role} ${p.dir} does not exist; training it first (${recipeOf(p.ref)})`)
      const data = yield* loadRunData(p.run.training.data)
      // A source may itself be a pruned run.
      yield* Effect.scoped(trainOrPrune(withTokenizerVocab(p.run, data.tokenizer.vocabSize), data, { ...options, out: p.dir, fresh: false, resumeCommand: commandOf(p.ref)! })).pipe(
        // Another process took its lock after the plan was made: it trains it; wait for that.
        Effect.catchTag("LockError", (e) =>
          Effect.gen(function* () {
            const holder = yield* awaitHolder(p.dir, p.role, waiting)
            if (holder === undefined) return yield* e
            if (!(yield* finished(p.dir))) return yield* new SourceRunError({ problem: stoppedProblem(`${p.role} ${p.dir}`, holder, p.ref) })
          }),
        ),
      )
    }
  })
