import { realpathSync } from "node:fs"
import { resolve } from "node:path"
import { objectiveSources } from "./objective/spec.js"
import type { RunSpec } from "./define.js"
import { warmStartModule } from "./warm-start/index.js"
import { type RunRef, runDirOf, type SourceRole } from "./run-ref.js"
import { resolveRecordedDir } from "./run-path.js"

/**
 * The runs a run reads, each part of it saying which (its objective's teacher, its warm
 * start's source, the run it prunes): made ready before it trains, never written by it.
 */
export interface RunSource {
  readonly ref: RunRef
  readonly role: SourceRole
  /** A replayed pruned run's source, whose weights its spec.json recorded: checked, never trained. */
  readonly recorded?: boolean
}

export const runSources = (run: RunSpec): ReadonlyArray<RunSource> => [
  ...objectiveSources(run.objective),
  ...(run.init ? [{ ref: warmStartModule(run.init).source(run.init), role: "warm-start source" as const }] : []),
  ...(run.prune
    ? [
        {
          ref: { run: resolveRecordedDir(run.prune.source.dir), experiment: run.prune.source.experiment, variant: run.prune.source.variant, seed: run.prune.source.seed },
          role: "pruning source" as const,
          ...(run.prune.source.checkpoint === undefined ? {} : { recorded: true }),
        },
      ]
    : []),
]

/** The directory itself, links resolved where it exists. */
const real = (dir: string): string => {
  try {
    return realpathSync(dir)
  } catch {
    return resolve(dir)
  }
}

/** Why `dir` may not receive `run`: it is a run that `run` reads, which is never written. */
export const readersProblem = (dir: string, run: RunSpec): string | undefined => {
  const read = runSources(run).find((s) => real(runDirOf(s.ref)) === real(dir))
  return read === undefined ? undefined : `is this run's ${read.role}, which it only reads; a run that another run reads is never written, whatever the flags: choose another --out`
}
