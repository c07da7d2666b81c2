import { Console, Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { resolve } from "node:path"
import { chooseBackend } from "../backend/select.js"
import { located } from "../errors/unexpected.js"
import { evaluateRun } from "../orchestration/evaluate-run.js"
import { openRun } from "../orchestration/run-dir.js"
import { progressBar } from "../io/progress.js"
import { runCommand } from "./boundary.js"
import { backendFlag, int8Unavailable, intFlag, weightsFlag } from "./flags.js"

/**
 * `npm run eval -- <run-dir> [--data FILE] [--weights int8]`: validation loss and bits per
 * byte of a run's checkpoint, and the FLOPs and blocks per token it spent, printed as JSON. The
 * text is encoded with the run's own tokenizer.json. With int8 weights each row is
 * teacher-forced through the native decode program, which computes what decoding computes.
 */
export const command = Command.make(
  "eval",
  {
    dir: Argument.String("run-dir").pipe(Argument.withDescription("a run directory (with spec.json and checkpoint/)")),
    data: Flag.String("data").pipe(Flag.withDescription("a TinyStories .txt or .json file (default: the validation split)"), Flag.optional),
    tokens: intFlag("tokens", { min: 1 }).pipe(Flag.withDescription("evaluate on the first N target tokens (default: the run's eval.tokens)"), Flag.optional),
    backend: backendFlag,
    weights: weightsFlag,
  },
  (a) =>
    Effect.scoped(
      Effect.gen(function* () {
        const backend = yield* chooseBackend(Option.getOrUndefined(a.backend))
        const open = yield* openRun(a.dir)
        const refused = int8Unavailable(open.model, a.weights)
        if (refused !== undefined) return yield* refused
        const result = yield* Effect.scoped(
          Effect.gen(function* () {
            const bar = yield* progressBar({ label: "evaluating", unit: "tok" })
            return yield* evaluateRun(open, {
              ...(Option.isSome(a.data) ? { file: resolve(a.data.value) } : {}),
              ...(Option.isSome(a.tokens) ? { tokens: a.tokens.value } : {}),
              weights: a.weights,
              onProgress: (current, total) => bar.set({ current, total }),
            })
          }),
        )
        yield* Console.log(
          JSON.stringify(
            {
              valLoss: result.loss,
              valBpb: result.bpb,
              tokens: result.tokens,
              bytesPerToken: result.bytesPerToken,
              flopsPerToken: { nominal: open.model.flops.forward, spent: result.flopsPerToken },
              blocksPerToken: result.blocksPerToken,
              weights: a.weights,
              file: result.file,
              step: open.step,
              backend: backend.name,
            },
            null,
            2,
          ),
        )
      }),
    ).pipe(located({ runDir: a.dir })),
).pipe(Command.withDescription("Evaluate a run's checkpoint: validation loss and bits per byte"))

runCommand(import.meta.url, command)
