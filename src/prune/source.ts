import { Data, Effect, FileSystem, Option, Path } from "effect"
import type { RunSpec } from "../experiment/define.js"
import { expandRuns, loadExperiment } from "../experiment/load.js"
import { resolveRecordedDir } from "../experiment/run-path.js"
import { checkpointIdentity } from "../train/checkpoint.js"
import type { Summary } from "../experiment/summary.js"
import type { SourceRecord } from "../experiment/prune/declare.js"
import { methodModule } from "../experiment/prune/methods/index.js"

/**
 * The run a pruned run starts from: whether it exists and has finished, what it is (its
 * spec.json and summary.json) and which weights it holds (spec hash, checkpoint sha256 and
 * step), compared with what a pruned run's spec.json recorded. Only read, never written.
 */
export class PruneError extends Data.TaggedError("PruneError")<{ readonly problem: string }> {
  override get message(): string {
    return this.problem
  }
}

export interface SourceIdentity {
  readonly specHash: string
  readonly checkpoint: string
  readonly step: number
}

export interface FinishedSource {
  readonly dir: string
  readonly run: RunSpec
  readonly summary: Summary
  readonly identity: SourceIdentity
}

export type SourceState =
  | { readonly kind: "missing" }
  | { readonly kind: "unfinished"; readonly step: number | undefined }
  | { readonly kind: "finished"; readonly source: FinishedSource }

export const inspectSource = (dir: string): Effect.Effect<SourceState, PruneError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const fail = (problem: string) => new PruneError({ problem: `source run ${dir}: ${problem}` })
    const exists = (name: string) => fs.exists(path.join(dir, name)).pipe(Effect.orElseSucceed(() => false))
    const identity = yield* checkpointIdentity(dir).pipe(Effect.mapError((e) => fail(e.message)))
    const hasSpec = yield* exists("spec.json")
    if (!hasSpec && Option.isNone(identity)) return { kind: "missing" } as const
    if (!(yield* exists("summary.json")) || Option.isNone(identity) || !hasSpec) return { kind: "unfinished", step: Option.getOrUndefined(identity)?.step } as const
    const summary = yield* fs.readFileString(path.join(dir, "summary.json")).pipe(
      Effect.flatMap((text) => Effect.try(() => JSON.parse(text) as Summary)),
      Effect.mapError(() => fail("summary.json is not readable")),
    )
    const id = identity.value
    if (summary.specHash !== id.specHash) return yield* fail(`summary.json (spec hash ${summary.specHash}) and the checkpoint (${id.specHash}) are of different runs`)
    const loaded = yield* loadExperiment(path.join(dir, "spec.json")).pipe(Effect.mapError((e) => fail(e.message)))
    const [run] = yield* expandRuns(loaded, {}).pipe(Effect.mapError((e) => fail(e.message)))
    return { kind: "finished", source: { dir, run: run!, summary, identity: { specHash: id.specHash, checkpoint: id.model, step: id.step } } } as const
  })

/** A problem when the source's weights are not the ones a pruned run's spec.json recorded. */
export const identityProblem = (record: SourceRecord, found: SourceIdentity): string | undefined => {
  const changed = (["specHash", "checkpoint", "step"] as const).filter((k) => record[k] !== undefined && record[k] !== found[k])
  if (changed.length === 0) return undefined
  return (
    `the source run ${record.dir} has changed since this run was pruned from it (${changed.map((k) => `${k} ${found[k]}, recorded ${record[k]}`).join("; ")}); ` +
    `prune it again from the experiment (npm run exp <experiment> -- --fresh) or restore the source`
  )
}

export const unfinishedProblem = (record: SourceRecord, step: number | undefined) =>
  `the source run ${record.dir} is unfinished (${step === undefined ? "no checkpoint" : `checkpoint at step ${step}`}, no summary.json); finish it first with npm run exp ${record.experiment}`

/**
 * The checks on pruned runs' sources that are particular to pruning, made before any run
 * starts: a finished source must still be what a spec.json recorded and suit the method; a
 * spec.json's source must exist and be finished. (An experiment's missing or unfinished
 * sources are handled with every other source run: runs/prerequisites.ts.)
 */
export const checkSources = (runs: ReadonlyArray<RunSpec>): Effect.Effect<void, PruneError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function* () {
    const problems: string[] = []
    for (const run of runs) {
      const record = run.prune
      if (record === undefined) continue
      const state = yield* inspectSource(resolveRecordedDir(record.source.dir))
      const where = `${run.experiment}/${run.variant} seed ${run.seed}`
      const replay = record.source.checkpoint !== undefined
      if (replay && state.kind === "unfinished") problems.push(`${where}: ${unfinishedProblem(record.source, state.step)}`)
      else if (replay && state.kind === "missing") problems.push(`${where}: the source run ${record.source.dir} does not exist; this spec.json was pruned from it`)
      else if (state.kind === "finished") {
        const changed = identityProblem(record.source, state.source.identity)
        if (changed !== undefined) problems.push(`${where}: ${changed}`)
        problems.push(...methodModule(record.method).check(record.method, state.source.run.model, hasFinetune(run)).map((i) => `${where}: at ${JSON.stringify(["prune", "method", ...i.path])}: ${i.message}`))
      }
    }
    if (problems.length > 0) return yield* new PruneError({ problem: [...new Set(problems)].join("\n") })
  })

/** A pruned run trains (a recovery fine-tune) unless its budget is zero steps. */
export const hasFinetune = (run: RunSpec): boolean => !("steps" in run.training.budget && run.training.budget.steps === 0)
