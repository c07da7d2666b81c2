import { randomBytes } from "node:crypto"
import { hostname, cpus } from "node:os"
import { dirname, join, relative, resolve } from "node:path"
import { Effect, FileSystem, Path } from "effect"
import type { CodeVersion } from "../io/code-version.js"
import { writeFileAtomic } from "../io/atomic-write.js"
import { findRunFiles } from "../io/walk-runs.js"
import { isInside } from "../experiment/names.js"
import type { Summary } from "../experiment/summary.js"
import type { DataConfig, RunSpec } from "../experiment/define.js"

/**
 * The ledger: one record for every run that ever finished, in `<runs folder>/ledger/`, one
 * JSON file per record. Each file is written whole to a temporary name and renamed into
 * place (src/io/atomic-write.ts), so a writer that dies mid-write leaves at most a stray
 * temporary file, never a torn record, and writers never share a file, so any number of
 * runs finishing at once (shards of a sweep on several machines sharing the folder over
 * NFS, where appends to one file are not atomic) lose nothing. Readers take the `.json`
 * files and ignore the rest.
 */
export interface LedgerRecord {
  readonly format: 1
  /** ISO 8601, when the run wrote its summary. */
  readonly finishedAt: string
  readonly experiment: string
  readonly variant: string
  readonly seed: number
  readonly specHash: string
  /** The run directory, relative to the runs folder when inside it. */
  readonly dir: string
  /** Absent outside a git checkout. */
  readonly code?: CodeVersion
  readonly data: DataConfig & { readonly hash: string }
  readonly tokenizer: string
  readonly tokenizerHash: string
  readonly results: {
    readonly valLoss: number
    readonly valBpb: number
    readonly trainLoss: number
    readonly lengths: Summary["lengths"]
    readonly tokensTrained: number
    readonly steps: number
    readonly params: Summary["params"]
    readonly tokensPerSecond: number
    readonly stepPeakBytes?: number
  }
  readonly backend: string
  readonly backendDetail: string
  readonly machine: string
  readonly wallSeconds: number
}

/** Where a run's record goes and what it records beyond the run itself. */
export interface LedgerOptions {
  readonly runsFolder: string
  readonly code: CodeVersion | undefined
}

export const ledgerDir = (runsFolder: string): string => join(runsFolder, "ledger")

/** This machine in a few words: host name and CPU model. */
export const machineName = (): string => `${hostname()} (${cpus()[0]?.model.trim() ?? "unknown CPU"})`

export const ledgerRecord = (
  run: RunSpec,
  summary: Summary,
  o: { readonly dir: string; readonly dataHash: string; readonly code: CodeVersion | undefined; readonly finishedAt: Date },
): LedgerRecord => ({
  format: 1,
  finishedAt: o.finishedAt.toISOString(),
  experiment: summary.experiment,
  variant: summary.variant,
  seed: summary.seed,
  specHash: summary.specHash,
  dir: o.dir,
  ...(o.code === undefined ? {} : { code: o.code }),
  data: { ...run.training.data, hash: o.dataHash },
  tokenizer: summary.tokenizer,
  tokenizerHash: summary.tokenizerHash,
  results: {
    valLoss: summary.valLoss,
    valBpb: summary.valBpb,
    trainLoss: summary.trainLoss,
    lengths: summary.lengths,
    tokensTrained: summary.tokensTrained,
    steps: summary.steps,
    params: summary.params,
    tokensPerSecond: summary.tokensPerSecond,
    ...(summary.stepPeakBytes === undefined ? {} : { stepPeakBytes: summary.stepPeakBytes }),
  },
  backend: summary.backend,
  backendDetail: summary.backendDetail,
  machine: summary.machine ?? machineName(),
  wallSeconds: summary.wallSeconds,
})

const safe = (s: string) => s.replace(/[^\w.=+-]/g, "_")

/** Adds a record; the file name sorts by time and cannot collide with another writer's. */
export const appendLedger = (runsFolder: string, record: LedgerRecord) =>
  Effect.gen(function* () {
    const path = yield* Path.Path
    const stamp = record.finishedAt.replace(/[:.]/g, "-")
    const name = `${stamp}-${safe(record.experiment)}-${safe(record.variant)}-seed${record.seed}-${randomBytes(6).toString("hex")}.json`
    yield* writeFileAtomic(path.join(ledgerDir(runsFolder), name), JSON.stringify(record, null, 2) + "\n", { makeDirectory: true })
  })

export interface Ledger {
  /** Oldest first. */
  readonly records: ReadonlyArray<LedgerRecord>
  /** Files that are not records (edited by hand, or from another tool), with the reason. */
  readonly unreadable: ReadonlyArray<string>
}

/** Why `x` is not a record the ledger's readers can show (they read these fields), undefined when it is. */
const recordProblem = (x: unknown): string | undefined => {
  const r = x as { [k: string]: any } | null
  if (typeof r !== "object" || r === null || Array.isArray(r) || r.format !== 1) return "not a ledger record"
  const fields: ReadonlyArray<[string, boolean]> = [
    ["experiment", typeof r.experiment === "string"],
    ["variant", typeof r.variant === "string"],
    ["seed", typeof r.seed === "number"],
    ["finishedAt", typeof r.finishedAt === "string"],
    ["specHash", typeof r.specHash === "string"],
    ["dir", typeof r.dir === "string"],
    ["results.valLoss", typeof r.results?.valLoss === "number"],
    ["results.valBpb", typeof r.results?.valBpb === "number"],
    ["results.tokensTrained", typeof r.results?.tokensTrained === "number"],
    ["data.extra", typeof r.data?.extra === "boolean"],
    ["data.hash", typeof r.data?.hash === "string"],
    ["code", r.code === undefined || (typeof r.code?.commit === "string" && typeof r.code?.dirty === "boolean")],
    ["backend", typeof r.backend === "string"],
    ["wallSeconds", typeof r.wallSeconds === "number"],
  ]
  const bad = fields.filter(([, ok]) => !ok).map(([name]) => name)
  return bad.length === 0 ? undefined : `a ledger record with a missing or malformed ${bad.join(", ")}`
}

/** Every record in the runs folder's ledger (none when it has no ledger yet). */
export const readLedger = (runsFolder: string): Effect.Effect<Ledger, never, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const dir = ledgerDir(runsFolder)
    const names = yield* fs.readDirectory(dir).pipe(Effect.orElseSucceed((): string[] => []))
    const records: LedgerRecord[] = []
    const unreadable: string[] = []
    for (const name of names.filter((n) => n.endsWith(".json")).sort()) {
      const file = path.join(dir, name)
      const text = yield* fs.readFileString(file).pipe(Effect.orElseSucceed(() => undefined))
      let parsed: unknown
      try {
        parsed = text === undefined ? undefined : JSON.parse(text)
      } catch {
        parsed = undefined
      }
      const problem = text === undefined ? "cannot be read" : recordProblem(parsed)
      if (problem === undefined) records.push(parsed as LedgerRecord)
      else unreadable.push(`${file}: ${problem}`)
    }
    records.sort((a, b) => (a.finishedAt < b.finishedAt ? -1 : a.finishedAt > b.finishedAt ? 1 : 0))
    return { records, unreadable }
  })

/** A run directory as records name it: relative to the runs folder when inside it, absolute otherwise. */
export const recordedDir = (runsFolder: string, dir: string): string => (isInside(runsFolder, dir) ? relative(runsFolder, dir) : resolve(dir))

/**
 * Whether the ledger holds the record of a finished run: the same directory, spec and finish
 * (summaries written before they said when they finished match on directory and spec alone).
 */
export const isRecorded = (records: ReadonlyArray<LedgerRecord>, dir: string, summary: Pick<Summary, "specHash" | "finishedAt">): boolean =>
  records.some((r) => r.dir === dir && r.specHash === summary.specHash && (summary.finishedAt === undefined || r.finishedAt === summary.finishedAt))

/**
 * The training pipeline's one call once a run has written its summary: adds the run's record
 * unless the ledger has it already (a finished run run again, or one whose record a failed
 * write left missing, which gets it now). True when it added one.
 */
export const recordFinishedRun = (run: RunSpec, summary: Summary, o: { readonly dir: string; readonly dataHash: string; readonly ledger: LedgerOptions }) =>
  Effect.gen(function* () {
    const dir = recordedDir(o.ledger.runsFolder, o.dir)
    const { records } = yield* readLedger(o.ledger.runsFolder)
    if (isRecorded(records, dir, summary)) return false
    const finishedAt = summary.finishedAt === undefined ? new Date() : new Date(summary.finishedAt)
    yield* appendLedger(o.ledger.runsFolder, ledgerRecord(run, summary, { dir, dataHash: o.dataHash, code: o.ledger.code, finishedAt }))
    return true
  })

/** Finished runs (a summary.json) under the runs folder that the ledger has no record of. */
export const unrecordedRuns = (runsFolder: string, records: ReadonlyArray<LedgerRecord>) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const files = yield* findRunFiles(runsFolder, ["summary.json"]).pipe(Effect.orElseSucceed((): string[] => []))
    const missing: Array<{ readonly dir: string; readonly experiment: string }> = []
    for (const file of files) {
      const text = yield* fs.readFileString(file).pipe(Effect.orElseSucceed(() => ""))
      let summary: Partial<Summary> | undefined
      try {
        summary = JSON.parse(text) as Partial<Summary>
      } catch {
        summary = undefined
      }
      // An imported run (npm run import) was trained elsewhere: the ledger records runs trained here.
      if (typeof summary?.specHash !== "string" || (summary as { imported?: unknown }).imported !== undefined) continue
      const dir = recordedDir(runsFolder, dirname(file))
      if (!isRecorded(records, dir, { specHash: summary.specHash, finishedAt: summary.finishedAt })) missing.push({ dir, experiment: String(summary.experiment) })
    }
    return missing
  })
