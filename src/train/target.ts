import { Effect, FileSystem, Option, Path } from "effect"
import { diffSpecs, formatDiff } from "../../dsl/diff.js"
import { hashSpec } from "../../dsl/hash.js"
import type { RunSpec } from "../experiment/define.js"
import { readersProblem } from "../experiment/readers.js"
import { LOCK_FILE } from "../io/run-lock.js"
import { checkpointIdentity, type CheckpointError } from "./checkpoint.js"
import { trainingIdentity } from "./identity.js"

/**
 * What `npm run exp` may do with the directory a run trains into, decided before anything is
 * written there. A finished run is never written again, whatever the flags: running it again
 * trains nothing, and a finished run of another spec is refused. An unfinished run of the same
 * spec resumes; of another spec it is refused with the differences, or discarded with
 * `--fresh` (which touches nothing else). A directory that holds no run must be empty, and a
 * run that this run reads (a teacher, a warm-start or pruning source) is never the target.
 */
export type Target =
  | { readonly kind: "new" }
  | { readonly kind: "resume" }
  | { readonly kind: "finished" }
  | { readonly kind: "refused"; readonly problem: string }

/** Entries a run leaves before its spec.json exists (a crash right after taking the lock). */
const lockEntry = (name: string): boolean => name === LOCK_FILE || name.startsWith(`${LOCK_FILE}.`)

/** Entries that make a directory a run's. */
const runEntries = ["spec.json", "checkpoint", "checkpoint.prev", "summary.json"]

const readJson = (fs: FileSystem.FileSystem, file: string) =>
  fs.readFileString(file).pipe(
    Effect.flatMap((text) => Effect.try(() => JSON.parse(text) as unknown)),
    Effect.option,
  )

/** The identity of a spec.json as read, undefined when it is not a run's. */
const identityOf = (json: unknown): ReturnType<typeof trainingIdentity> | undefined => {
  try {
    return trainingIdentity(json as RunSpec)
  } catch {
    return undefined
  }
}

/**
 * How this run differs from the one a checkpoint or summary was made from, by the identity the
 * checkpoint records or else the directory's spec.json, whichever hashes to its spec hash: a
 * spec.json may belong to another run than the checkpoint (one started with --fresh and
 * stopped before its first checkpoint), and its differences would then be the wrong ones.
 */
const changesFrom = (hash: string, candidates: ReadonlyArray<unknown>, run: RunSpec): string => {
  const trainedFrom = candidates.find((c) => c !== undefined && hashSpec(c) === hash)
  return trainedFrom === undefined
    ? "What it was trained from is unknown: neither its checkpoint nor the directory's spec.json records a spec with its hash."
    : `Changes from the spec it was trained from:\n${formatDiff(diffSpecs(trainedFrom, trainingIdentity(run)))}`
}

const entriesOf = (dir: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    return yield* fs.readDirectory(dir).pipe(Effect.orElseSucceed((): string[] => []))
  })

const placeProblemOf = (dir: string, entries: ReadonlyArray<string>, run: RunSpec, fresh: boolean): string | undefined => {
  const readers = readersProblem(dir, run)
  if (readers !== undefined) return `${dir}: ${readers}`
  if (entries.every(lockEntry)) return undefined
  if (!entries.some((e) => runEntries.includes(e))) {
    const shown = entries.filter((e) => !lockEntry(e)).sort()
    return (
      `${dir}: is not empty and holds no run (${shown.slice(0, 5).join(", ")}${shown.length > 5 ? `, … ${shown.length} entries` : ""}); ` +
      "a run is written only into an empty directory or one holding the same run: choose another --out"
    )
  }
  if (fresh && entries.includes("summary.json"))
    return `${dir}: holds a finished run; --fresh discards only an unfinished run's checkpoint, and a finished run is never trained again. To train it anew, delete the directory by hand or train elsewhere with --out DIR`
  return undefined
}

/**
 * What can be told of a target without the run's final spec (its tokenizer and sources), so
 * before any data is read: a run it reads, a directory that holds no run, a finished run and `--fresh`.
 */
export const placeProblem = (dir: string, run: RunSpec, fresh: boolean): Effect.Effect<string | undefined, never, FileSystem.FileSystem> =>
  Effect.map(entriesOf(dir), (entries) => placeProblemOf(dir, entries, run, fresh))

export const inspectTarget = (dir: string, run: RunSpec, fresh: boolean): Effect.Effect<Target, CheckpointError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const refuse = (problem: string): Target => ({ kind: "refused", problem: `${dir}: ${problem}` })
    const entries = yield* entriesOf(dir)
    const place = placeProblemOf(dir, entries, run, fresh)
    if (place !== undefined) return { kind: "refused", problem: place }
    if (entries.every(lockEntry)) return { kind: "new" }
    const specHash = hashSpec(trainingIdentity(run))
    const spec = yield* readJson(fs, path.join(dir, "spec.json"))
    const specIdentity = Option.isSome(spec) ? identityOf(spec.value) : undefined
    if (entries.includes("summary.json")) {
      const summary = yield* readJson(fs, path.join(dir, "summary.json"))
      const finishedHash = Option.isSome(summary) ? (summary.value as { specHash?: unknown } | null)?.specHash : undefined
      if (finishedHash === specHash) return { kind: "finished" }
      const checkpoint = yield* checkpointIdentity(dir).pipe(Effect.orElseSucceed(() => Option.none()))
      const changes = typeof finishedHash === "string" ? `\n${changesFrom(finishedHash, [Option.getOrUndefined(checkpoint)?.trainedFrom, specIdentity], run)}` : ""
      return refuse(
        `holds a finished run of another spec${typeof finishedHash === "string" ? ` (spec hash ${finishedHash}, this one is ${specHash})` : " (its summary.json cannot be read)"}, ` +
          `which is never overwritten; train elsewhere with --out DIR, or delete the directory by hand.${changes}`,
      )
    }
    if (fresh && specIdentity !== undefined) return { kind: "new" }
    const checkpoint = yield* checkpointIdentity(dir)
    if (Option.isNone(checkpoint) && specIdentity === undefined)
      return refuse("holds a spec.json that is not a run's, and no checkpoint; a run is written only into an empty directory or one holding the same run: choose another --out")
    if (fresh) return { kind: "new" }
    const startedHash = Option.isSome(checkpoint) ? checkpoint.value.specHash : hashSpec(specIdentity!)
    if (startedHash !== specHash)
      return refuse(
        `holds ${Option.isSome(checkpoint) ? "a checkpoint" : "the start"} of a different run (spec hash ${startedHash}, this one is ${specHash}).\n` +
          `${changesFrom(startedHash, [Option.getOrUndefined(checkpoint)?.trainedFrom, specIdentity], run)}\n` +
          "Use --fresh to discard it or --out DIR to train elsewhere.",
      )
    return Option.isSome(checkpoint) ? { kind: "resume" } : { kind: "new" }
  })
