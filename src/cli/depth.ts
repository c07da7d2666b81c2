import { Console, Data, Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { existsSync } from "node:fs"
import { join, resolve } from "node:path"
import { measures } from "../../dsl/kinds/depth/early-exit.js"
import { chooseBackend } from "../backend/select.js"
import { depthReport } from "../depth/report.js"
import { runsFolder } from "../io/paths.js"
import { runCommand } from "./boundary.js"
import { intFlag } from "./flags.js"

/**
 * `npm run depth -- <experiment | dir> [--thresholds 1,0.9,0.5] [--measure M] [--tokens N] [--generate N]`:
 * the dynamic-depth tables of trained runs (every run directory under the target): each
 * pruned to every other block, and each early-exit model at several thresholds, with
 * generation speed. Nothing is trained.
 */
class UsageError extends Data.TaggedError("UsageError")<{ readonly message: string }> {}

export const command = Command.make(
  "depth",
  {
    target: Argument.String("experiment-or-dir").pipe(Argument.withDescription("an experiment name (runs/<name>) or a directory of runs")),
    thresholds: Flag.String("thresholds").pipe(Flag.withDescription("early-exit thresholds, comma-separated"), Flag.withDefault("1,0.9,0.8,0.6,0.4,0.2")),
    measure: Flag.Literals("measure", measures).pipe(Flag.withDescription("early-exit confidence measure (default: each run's own)"), Flag.optional),
    tokens: intFlag("tokens", { min: 1 }).pipe(Flag.withDescription("validation tokens per evaluation (default: each run's eval.tokens)"), Flag.optional),
    generate: intFlag("generate", { min: 0, max: 100_000 }).pipe(Flag.withDescription("tokens generated for the speed figures"), Flag.withDefault(128)),
    backend: Flag.String("backend").pipe(Flag.optional),
  },
  (a) =>
    Effect.gen(function* () {
      const thresholds = a.thresholds.split(",").map(Number)
      if (thresholds.some((t) => !Number.isFinite(t))) return yield* new UsageError({ message: `--thresholds: expected numbers like 1,0.9,0.5, got "${a.thresholds}"` })
      const named = join(runsFolder(), a.target)
      const dir = existsSync(named) ? named : resolve(a.target)
      const backend = yield* chooseBackend(Option.getOrUndefined(a.backend))
      yield* Console.error(`backend: ${backend.name} (${backend.detail})`)
      const report = yield* depthReport(dir, {
        thresholds,
        generate: a.generate,
        ...(Option.isSome(a.measure) ? { measure: a.measure.value } : {}),
        ...(Option.isSome(a.tokens) ? { tokens: a.tokens.value } : {}),
      })
      yield* Console.log(`${dir}\n\n${report}`)
    }),
).pipe(Command.withDescription("Dynamic-depth tables of trained runs: pruning, early-exit thresholds, generation speed"))

runCommand(import.meta.url, command)
