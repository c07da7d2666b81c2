import { Effect, type FileSystem, type Path, type Scope } from "effect"
import type { RunSpec } from "../experiment/define.js"
import type { Summary } from "../experiment/summary.js"
import { located } from "../errors/unexpected.js"
import type { LockError } from "../io/run-lock.js"
import type { ProgressSink } from "../io/progress.js"
import type { CheckpointError } from "./checkpoint.js"
import { finishRun } from "./finish.js"
import { openTraining } from "./open.js"
import type { RunData } from "./run-data.js"
import type { RunError, RunOptions } from "./run-options.js"
import { openSession } from "./session.js"
import { trainSteps } from "./steps.js"

/**
 * One run (one variant, one seed) as an Effect program, in four phases a reader can take one
 * at a time: open (its identity and sources, the checks that can fail before anything is
 * written, the directory's lock; a finished run ends here), the session (model, objective,
 * optimiser and start restored or initialised), the steps, and the finish (summary, ledger).
 * A run's parts enter through their hooks: the objective's loss and tensors, a pruned start's
 * weights and masks, a warm start's weights.
 */
export const trainRun = (
  requested: RunSpec,
  data: RunData,
  options: RunOptions,
): Effect.Effect<Summary, RunError | CheckpointError | LockError, FileSystem.FileSystem | Path.Path | ProgressSink | Scope.Scope> =>
  Effect.gen(function* () {
    const opened = yield* openTraining(requested, data, options)
    if (opened.kind === "finished") return opened.summary
    const session = yield* openSession(opened, data, options)
    const trained = yield* trainSteps(session, data, options)
    return yield* finishRun(session, trained, data, options)
  }).pipe(located({ runDir: options.out }))
