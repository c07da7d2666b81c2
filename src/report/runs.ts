import { Data, Effect, FileSystem, Option, Path } from "effect"
import { findRunFiles } from "../io/walk-runs.js"
import type { RunSpec } from "../experiment/define.js"
import type { Summary } from "../train/run.js"
import { type ParsedMetrics, parseMetrics } from "./curves.js"

/**
 * The run directories a report shows: every directory holding a spec.json under the given
 * folders (an experiment's, or several shards' written into one runs folder: they are just
 * run directories), finished or still training.
 */
export class ReportError extends Data.TaggedError("ReportError")<{ readonly message: string }> {}

export interface RunView {
  readonly dir: string
  readonly spec: RunSpec
  /** Absent while the run is still training. */
  readonly summary?: Summary
  readonly metrics: ParsedMetrics
}

const readJson = <T>(file: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const text = yield* fs.readFileString(file).pipe(Effect.mapError((e) => new ReportError({ message: `cannot read ${file}: ${e.message}` })))
    return yield* Effect.try({ try: () => JSON.parse(text) as T, catch: () => new ReportError({ message: `${file} is not JSON` }) })
  })

/** Files whose change means the report is out of date, with their sizes and modification times. */
export const runFiles = (roots: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const out: string[] = []
    for (const root of roots) {
      if (!(yield* fs.exists(root).pipe(Effect.orElseSucceed(() => false)))) return yield* new ReportError({ message: `${root} does not exist; give an experiment name with runs in the runs folder, or a run directory` })
      out.push(...(yield* findRunFiles(root, ["spec.json", "metrics.jsonl", "summary.json"]).pipe(Effect.mapError((message) => new ReportError({ message })))))
    }
    return out.sort()
  })

/** A fingerprint of the runs' files: changes whenever a metric, summary or new run lands. */
export const runsFingerprint = (roots: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const files = yield* runFiles(roots)
    const stats = yield* Effect.forEach(files, (f) => fs.stat(f).pipe(Effect.map((s) => `${f}:${s.size}:${Option.getOrUndefined(s.mtime)?.getTime() ?? 0}`), Effect.orElseSucceed(() => `${f}:gone`)))
    return stats.join("\n")
  })

export const loadRuns = (roots: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const dirs = [...new Set((yield* runFiles(roots)).filter((f) => path.basename(f) === "spec.json").map((f) => path.dirname(f)))]
    if (dirs.length === 0) return yield* new ReportError({ message: `no runs (spec.json) under ${roots.join(", ")}` })
    return yield* Effect.forEach(dirs, (dir) =>
      Effect.gen(function* () {
        const spec = yield* readJson<RunSpec>(path.join(dir, "spec.json"))
        const summaryFile = path.join(dir, "summary.json")
        const summary = (yield* fs.exists(summaryFile).pipe(Effect.orElseSucceed(() => false))) ? yield* readJson<Summary>(summaryFile) : undefined
        const text = yield* fs.readFileString(path.join(dir, "metrics.jsonl")).pipe(Effect.orElseSucceed(() => ""))
        return { dir, spec, ...(summary === undefined ? {} : { summary }), metrics: parseMetrics(text) } satisfies RunView
      }),
    )
  })
