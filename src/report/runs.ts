import { Data, Effect, FileSystem, Option, Path, Stream } from "effect"
import { findRunFiles } from "../io/walk-runs.js"
import type { RunSpec } from "../experiment/define.js"
import { ioReason } from "../errors/io-error.js"
import { checkSummary, type CheckedSummary } from "./summary.js"
import { type MetricsLimits, metricsReader, type ParsedMetrics } from "./curves.js"

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
  readonly summary?: CheckedSummary
  readonly metrics: ParsedMetrics
}

/** The runs a report shows, and what it could not read of them, each naming its file. */
export interface LoadedRuns {
  readonly runs: ReadonlyArray<RunView>
  readonly warnings: ReadonlyArray<string>
}

/** A file's JSON, or why there is none. */
const readJson = (file: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const text = yield* fs.readFileString(file).pipe(Effect.mapError((e) => `cannot read ${file}: ${ioReason(e)}`))
    return yield* Effect.try({ try: (): unknown => JSON.parse(text), catch: () => `${file} is not JSON` })
  })

/** What a report needs of spec.json to place a run: its experiment, variant and seed. */
const checkSpec = (raw: unknown, file: string): RunSpec | string => {
  const r = raw as Partial<Record<keyof RunSpec, unknown>> | null
  if (typeof r !== "object" || r === null || Array.isArray(r)) return `${file} is not a JSON object`
  for (const key of ["experiment", "variant"] as const) if (typeof r[key] !== "string") return `${file}: ${key} is not a string`
  if (typeof r.seed !== "number") return `${file}: seed is not a number`
  return raw as RunSpec
}

/**
 * A run's metrics.jsonl, streamed through the bounded reader (none yet: no rows). A file that
 * cannot be read, or not to its end, keeps the rows read so far and says why.
 */
export const readMetrics = (file: string, limits: MetricsLimits, o: { readonly chunkSize?: number } = {}) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const reader = metricsReader(limits)
    if (!(yield* fs.exists(file).pipe(Effect.orElseSucceed(() => false)))) return reader.done()
    const failure = yield* fs.stream(file, o.chunkSize === undefined ? {} : { chunkSize: o.chunkSize }).pipe(
      Stream.runForEach((chunk) => Effect.sync(() => reader.push(chunk))),
      Effect.match({ onFailure: (e) => `cannot read ${file}: ${ioReason(e)}`, onSuccess: () => undefined }),
    )
    return { ...reader.done(), ...(failure === undefined ? {} : { unreadable: failure }) } satisfies ParsedMetrics
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

/**
 * Every run under the roots. A run whose spec.json or summary.json cannot be read is left out,
 * a summary field that is not what the tables expect is not shown, and each is a warning that
 * names its file: the page is made from what can be read.
 */
export const loadRuns = (roots: ReadonlyArray<string>, limits: MetricsLimits) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const dirs = [...new Set((yield* runFiles(roots)).filter((f) => path.basename(f) === "spec.json").map((f) => path.dirname(f)))]
    if (dirs.length === 0) return yield* new ReportError({ message: `no runs (spec.json) under ${roots.join(", ")}` })
    const warnings: string[] = []
    const runs = yield* Effect.forEach(dirs, (dir) =>
      Effect.gen(function* () {
        const specFile = path.join(dir, "spec.json")
        const spec = yield* readJson(specFile).pipe(Effect.map((raw) => checkSpec(raw, specFile)), Effect.orElseSucceed((why) => why))
        if (typeof spec === "string") return void warnings.push(`${spec}; its run is left out`)
        const summaryFile = path.join(dir, "summary.json")
        const summary = (yield* fs.exists(summaryFile).pipe(Effect.orElseSucceed(() => false)))
          ? yield* readJson(summaryFile).pipe(
              // The page places a run by its spec; its summary's own variant and seed are not shown.
              Effect.map((raw) => checkSummary(typeof raw === "object" && raw !== null && !Array.isArray(raw) ? { ...raw, variant: spec.variant, seed: spec.seed } : raw, summaryFile, { page: true })),
              Effect.orElseSucceed((warning) => ({ _tag: "Skipped" as const, warning: `${warning}; its run is left out` })),
            )
          : undefined
        if (summary?._tag === "Skipped") return void warnings.push(summary.warning)
        if (summary !== undefined) warnings.push(...summary.warnings)
        const metrics = yield* readMetrics(path.join(dir, "metrics.jsonl"), limits)
        if (metrics.unreadable !== undefined) warnings.push(`${metrics.unreadable}; its curves ${metrics.rows.length > 0 ? "stop where reading stopped" : "are left out"}`)
        return { dir, spec, ...(summary === undefined ? {} : { summary: summary.summary }), metrics } satisfies RunView
      }),
    )
    return { runs: runs.filter((r) => r !== undefined), warnings } satisfies LoadedRuns
  })
