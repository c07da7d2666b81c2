import { realpathSync } from "node:fs"
import { resolve } from "node:path"
import type { RunSpec } from "./define.js"
import { runDirOf } from "./run-ref.js"
import { resolveRecordedDir } from "./run-path.js"

/** The run directories a run reads: its distillation teacher, warm-start source and pruning source. */
export const readDirsOf = (run: RunSpec): ReadonlyArray<{ readonly dir: string; readonly role: string }> => [
  ...(run.objective?.kind === "distill" ? [{ dir: runDirOf(run.objective.teacher), role: "teacher" }] : []),
  ...(run.init ? [{ dir: runDirOf(run.init.from), role: "warm-start source" }] : []),
  ...(run.prune ? [{ dir: resolveRecordedDir(run.prune.source.dir), role: "pruning source" }] : []),
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
  const read = readDirsOf(run).find((r) => real(r.dir) === real(dir))
  return read === undefined ? undefined : `is this run's ${read.role}, which it only reads; a run that another run reads is never written, whatever the flags: choose another --out`
}
