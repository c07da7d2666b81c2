import { Data, Effect, FileSystem, Option, Path } from "effect"
import { formatPath } from "../../dsl/decode.js"
import { canonicalJson, hashSpec } from "../../dsl/hash.js"
import type { RunSpec } from "../experiment/define.js"
import { expandRuns, loadExperiment } from "../experiment/load.js"
import { commandOf, recipeOf, type RunRef, runDirOf, type SourceRole } from "../experiment/run-ref.js"
import { warmStartModule } from "../experiment/warm-start/index.js"
import { objectiveModule, objectiveProblems, objectiveSources } from "../experiment/objective/spec.js"
import { loadCheckpoint, type TensorArrays } from "./checkpoint.js"
import type { RunData } from "./run-data.js"

/**
 * The finished runs a run reads (its distillation teacher, the run it starts from), opened
 * read-only and checked against it before anything is written: present and finished, the
 * same tokenizer, blocks and parameters that exist, and unchanged since the run first started
 * from them. A source's fingerprint (its spec hash and the sha256 of its weights) goes into
 * the run's spec.json and spec hash, so a changed source refuses a resume like a changed model.
 */
export class SourceError extends Data.TaggedError("SourceError")<{ readonly problem: string }> {
  override get message(): string {
    return this.problem
  }
}


export interface SourceRun {
  readonly dir: string
  readonly run: RunSpec
  /** Its weights as host arrays. */
  readonly params: TensorArrays
  readonly fingerprint: string
}

export interface Sources {
  /** The run with its sources' fingerprints filled in. */
  readonly run: RunSpec
  /** The runs the objective reads (a teacher), in the order its description names them. */
  readonly objective: ReadonlyArray<SourceRun>
  readonly warmStart?: SourceRun
}

/** What `run` needs of a source's spec, found from the two specs alone (so before either trains). */
export const sourceSpecProblems = (run: RunSpec, role: SourceRole, source: RunSpec, dir: string): string[] => {
  const problems: string[] = []
  const name = `${role} ${dir}`
  // The same data config makes the same tokenizer; its file is compared when the run starts.
  if (canonicalJson(source.training.data) !== canonicalJson(run.training.data))
    problems.push(
      `${name}: its tokenizer (${dir}/tokenizer.json, from training.data ${canonicalJson(source.training.data)}) is not this run's (training.data ${canonicalJson(run.training.data)}); both must use one tokenizer`,
    )
  if (run.objective !== undefined && objectiveSources(run.objective).some((s) => s.role === role))
    for (const i of objectiveModule(run.objective).checkSource(run.objective, run.model, source.model, dir))
      problems.push(i.path.length === 0 ? `${name}: ${i.message}` : `at ${formatPath(["objective", ...i.path])}: ${i.message}`)
  if (role === "warm-start source" && run.init !== undefined)
    for (const i of warmStartModule(run.init).checkSource(run.init, run.model, source.model, dir))
      problems.push(i.path.length === 0 ? `${name}: ${i.message}` : `at ${formatPath(["init", ...i.path])}: ${i.message}`)
  return problems
}

const openSource = (ref: RunRef, role: SourceRole, data: RunData) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const dir = runDirOf(ref)
    const fail = (problem: string) => new SourceError({ problem: `${role} ${dir}: ${problem}` })
    const exists = (p: string) => fs.exists(p).pipe(Effect.orElseSucceed(() => false))
    const recipe = recipeOf(ref)
    const howToMake = recipe ? `; npm run exp trains it first (${recipe})` : "; train it first, or name the experiment that makes it (runOf)"
    if (!(yield* exists(path.join(dir, "spec.json")))) return yield* fail(`no run there (no spec.json)${howToMake}`)
    const summaryPath = path.join(dir, "summary.json")
    if (!(yield* exists(summaryPath))) return yield* fail(`the run is unfinished (no summary.json); finish it first${recipe ? ` with ${commandOf(ref)}` : ""}`)
    const loaded = yield* loadExperiment(path.join(dir, "spec.json")).pipe(Effect.mapError((e) => fail(e.message)))
    const [run] = yield* expandRuns(loaded, {}).pipe(Effect.mapError((e) => fail(e.message)))
    const summary = yield* fs.readFileString(summaryPath).pipe(
      Effect.flatMap((s) => Effect.try(() => JSON.parse(s) as { steps: number; tokenizer?: string })),
      Effect.mapError(() => fail(`${summaryPath} is not a readable summary`)),
    )
    const tokenizerPath = path.join(dir, "tokenizer.json")
    const tokenizer = yield* fs.readFileString(tokenizerPath).pipe(Effect.mapError((e) => fail(`cannot read ${tokenizerPath}: ${e.message}`)))
    if (tokenizer !== data.tokenizer.json())
      return yield* fail(
        `its tokenizer ${tokenizerPath} (${summary.tokenizer ?? "unnamed"}) is not this run's ${data.tokenizer.path ?? "tokenizer"} (${data.tokenizer.name}); both must use one tokenizer`,
      )
    const checkpoint = yield* loadCheckpoint(dir).pipe(Effect.mapError((e) => fail(e.message)))
    if (Option.isNone(checkpoint)) return yield* fail(`the run has no checkpoint${howToMake}`)
    const state = checkpoint.value.state
    if (state.step !== summary.steps) return yield* fail(`its checkpoint is at step ${state.step}, but summary.json says it finished at step ${summary.steps}; it was trained further or changed`)
    const statePath = path.join(dir, "checkpoint", "state.json")
    const weights = yield* fs.readFileString(statePath).pipe(
      Effect.flatMap((s) => Effect.try(() => (JSON.parse(s) as { files: { model: { sha256: string } } }).files.model.sha256)),
      Effect.mapError(() => fail(`cannot read the weights' digest from ${statePath}`)),
    )
    const fingerprint = hashSpec({ spec: state.specHash, weights })
    if (ref.fingerprint !== undefined && ref.fingerprint !== fingerprint)
      return yield* fail(
        `changed since this run started from it (fingerprint ${ref.fingerprint}, now ${fingerprint}); restore that run, or start this one from its experiment instead of its spec.json`,
      )
    return { dir, run: run!, params: checkpoint.value.params, fingerprint } satisfies SourceRun
  })

const withFingerprint = (ref: RunRef, fingerprint: string): RunRef => ({ ...ref, fingerprint })

/** Opens and checks the run's sources; fails with every problem before anything is written. */
export const prepareSources = (run: RunSpec, data: RunData) =>
  Effect.gen(function* () {
    const named = objectiveSources(run.objective)
    const objectiveRuns: SourceRun[] = []
    for (const s of named) objectiveRuns.push(yield* openSource(s.ref, s.role, data))
    const warmStart = run.init ? yield* openSource(warmStartModule(run.init).source(run.init), "warm-start source", data) : undefined
    const problems = [
      ...(run.objective ? objectiveProblems(run.objective, run.model, ["objective"]) : []),
      ...objectiveRuns.flatMap((s, i) => sourceSpecProblems(run, named[i]!.role, s.run, s.dir)),
      ...(warmStart ? sourceSpecProblems(run, "warm-start source", warmStart.run, warmStart.dir) : []),
    ]
    if (problems.length > 0) return yield* new SourceError({ problem: problems.join("\n") })
    const resolved: RunSpec = {
      ...run,
      ...(run.objective && objectiveRuns.length > 0
        ? { objective: objectiveModule(run.objective).withSources(run.objective, named.map((s, i) => withFingerprint(s.ref, objectiveRuns[i]!.fingerprint))) }
        : {}),
      ...(run.init && warmStart ? { init: warmStartModule(run.init).withSource(run.init, withFingerprint(warmStartModule(run.init).source(run.init), warmStart.fingerprint)) } : {}),
    }
    return { run: resolved, objective: objectiveRuns, ...(warmStart ? { warmStart } : {}) } satisfies Sources
  })
