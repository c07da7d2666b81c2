import * as tf from "@tensorflow/tfjs"
import { Data, Effect, FileSystem, Option, Path, Schedule } from "effect"
import { hashSpec } from "../../dsl/index.js"
import { compile, type Model } from "../model/compile.js"
import type { Params } from "../model/init.js"
import { readTokenizer } from "../tokenizer/registry.js"
import type { TextTokenizer } from "../tokenizer/text-tokenizer.js"
import { loadCheckpoint } from "../train/checkpoint.js"
import { trainingIdentity } from "../train/identity.js"
import type { RunSpec } from "../experiment/define.js"
import { expandRuns, loadExperiment } from "../experiment/load.js"

/** Opening a finished or interrupted run directory for evaluation and generation. */
export class RunDirError extends Data.TaggedError("RunDirError")<{ readonly dir: string; readonly problem: string }> {
  override get message(): string {
    return `${this.dir}: ${this.problem}`
  }
}

export interface OpenRun {
  readonly run: RunSpec
  readonly model: Model
  readonly params: Params
  readonly tokenizer: TextTokenizer
  readonly step: number
}

/** The run a directory's spec.json describes, validated; nothing else is read. */
export const readRunSpec = (dir: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const fail = (problem: string) => new RunDirError({ dir, problem })
    const specPath = path.join(dir, "spec.json")
    if (!(yield* fs.exists(specPath).pipe(Effect.orElseSucceed(() => false)))) return yield* fail("not a run directory (no spec.json)")
    const loaded = yield* loadExperiment(specPath).pipe(Effect.mapError((e) => fail(e.message)))
    const [run] = yield* expandRuns(loaded, {}).pipe(Effect.mapError((e) => fail(e.message)))
    return run!
  })

/** Loads spec.json, tokenizer.json and the checkpoint; the parameters are released with the scope. */
export const openRun = (dir: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const fail = (problem: string) => new RunDirError({ dir, problem })
    const run = yield* readRunSpec(dir)
    const tokenizerText = yield* fs.readFileString(path.join(dir, "tokenizer.json")).pipe(Effect.mapError((e) => fail(`cannot read tokenizer.json: ${e.message}`)))
    const tokenizer = yield* Effect.try({ try: () => readTokenizer(tokenizerText), catch: (e) => fail(`tokenizer.json: ${(e as Error).message}`) })
    // A training run may swap in a new checkpoint while this one is read: a failed read is retried.
    const checkpoint = yield* loadCheckpoint(dir).pipe(
      Effect.retry({ times: 3, schedule: Schedule.spaced("300 millis") }),
      Effect.mapError((e) => fail(e.message)),
    )
    if (Option.isNone(checkpoint)) return yield* fail("has no checkpoint yet")
    const specHash = hashSpec(trainingIdentity(run))
    if (checkpoint.value.state.specHash !== specHash)
      return yield* fail(
        `the checkpoint was trained from a different spec (hash ${checkpoint.value.state.specHash}) than spec.json describes (hash ${specHash}); ` +
          "spec.json was edited or replaced after training, so the checkpoint cannot be evaluated against it",
      )
    const model = compile(run.model)
    const saved = checkpoint.value.params
    for (const p of model.table) {
      const s = saved[p.name]
      if (s === undefined || s.shape.join(",") !== p.decl.shape.join(",")) return yield* fail(`checkpoint parameter "${p.name}" is missing or has the wrong shape`)
    }
    const params = yield* Effect.acquireRelease(
      Effect.sync(() => Object.fromEntries(model.table.map((p) => [p.name, tf.tidy(() => tf.variable(tf.tensor(saved[p.name]!.data, [...p.decl.shape], "float32"), false))]))),
      (ps) => Effect.sync(() => tf.dispose(Object.values(ps))),
    )
    return { run, model, params, tokenizer, step: checkpoint.value.state.step } satisfies OpenRun
  })
