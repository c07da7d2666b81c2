import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Console, Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { resolve } from "node:path"
import { chooseBackend } from "../backend/select.js"
import { evalBatches } from "../data/batcher.js"
import { resolveDataset } from "../data/dataset.js"
import { forEachStory } from "../data/stories.js"
import { evaluate } from "../eval/evaluate.js"
import { openRun } from "../experiment/run-dir.js"
import { progressBar, ProgressSink } from "../report/progress.js"
import { failWith } from "./fail.js"

/**
 * `npm run eval -- <run-dir> [--data FILE]`: validation loss and bits per byte of a run's
 * checkpoint, printed as JSON. The text is encoded with the run's own tokenizer.json.
 */
const command = Command.make(
  "eval",
  {
    dir: Argument.String("run-dir").pipe(Argument.withDescription("a run directory (with spec.json and checkpoint/)")),
    data: Flag.String("data").pipe(Flag.withDescription("a TinyStories .txt or .json file (default: the validation split)"), Flag.optional),
    tokens: Flag.Int("tokens").pipe(Flag.withDescription("evaluate on the first N target tokens (default: the run's eval.tokens)"), Flag.optional),
    backend: Flag.String("backend").pipe(Flag.optional),
  },
  (a) =>
    Effect.scoped(
      Effect.gen(function* () {
        const backend = yield* chooseBackend(Option.getOrUndefined(a.backend))
        const { run, model, params, tokenizer, step } = yield* openRun(a.dir)
        const file = Option.isSome(a.data) ? resolve(a.data.value) : (yield* resolveDataset({ extra: run.training.data.extra })).valid
        const ids: number[] = []
        const stats = yield* forEachStory(file, (story) => {
          for (const id of tokenizer.encode(story)) ids.push(id)
          ids.push(tokenizer.eotId)
        })
        const tokens = Uint32Array.from(ids)
        const bytesPerToken = stats.bytes / tokens.length
        const limit = Option.getOrElse(a.tokens, () => run.training.eval.tokens)
        const batches = evalBatches(tokens, { batch: run.training.batch, context: run.model.context, maxTokens: limit, padId: tokenizer.eotId })
        const result = yield* Effect.scoped(
          Effect.gen(function* () {
            const bar = yield* progressBar({ label: "evaluating", total: Math.min(limit, tokens.length - 1), unit: "tok" })
            return evaluate(model, params, batches, bytesPerToken, (done) => bar.set({ current: done }))
          }),
        )
        yield* Console.log(
          JSON.stringify({ valLoss: result.loss, valBpb: result.bpb, tokens: result.tokens, bytesPerToken, file, step, backend: backend.name }, null, 2),
        )
      }),
    ).pipe(failWith),
).pipe(Command.withDescription("Evaluate a run's checkpoint: validation loss and bits per byte"))

Command.run(command, { version: "0.1.0" }).pipe(
  Effect.provide(NodeServices.layer),
  Effect.provide(ProgressSink.stderr),
  NodeRuntime.runMain({ disableErrorReporting: true }),
)
