import { Console, Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { existsSync } from "node:fs"
import { join, resolve } from "node:path"
import { measures } from "../../dsl/kinds/depth/early-exit.js"
import { chooseBackend } from "../backend/select.js"
import { depthReport } from "../report/depth.js"
import { runsFolder } from "../io/paths.js"
import { runCommand } from "./boundary.js"
import { backendFlag, intFlag, numberListFlag } from "./flags.js"

/**
 * `npm run depth -- <experiment | dir> [--thresholds 1,0.9,0.5] [--measure M] [--tokens N] [--generate N]`:
 * the dynamic-depth tables of trained runs (every run directory under the target): each
 * pruned to every other block, and each early-exit model at several thresholds, with
 * generation speed. Nothing is trained.
 */

export const command = Command.make(
  "depth",
  {
    target: Argument.String("experiment-or-dir").pipe(Argument.withDescription("an experiment name (runs/<name>) or a directory of runs")),
    // Each measure checks its own range ([0, 1] for softmax) against every run before any work.
    thresholds: numberListFlag("thresholds", { min: -1, max: 1 }).pipe(Flag.withDescription("early-exit thresholds, comma-separated"), Flag.withDefault([1, 0.9, 0.8, 0.6, 0.4, 0.2])),
    measure: Flag.Literals("measure", measures).pipe(Flag.withDescription("early-exit confidence measure (default: each run's own)"), Flag.optional),
    tokens: intFlag("tokens", { min: 1 }).pipe(Flag.withDescription("validation tokens per evaluation (default: each run's eval.tokens)"), Flag.optional),
    generate: intFlag("generate", { min: 0, max: 100_000 }).pipe(Flag.withDescription("tokens generated for the speed figures"), Flag.withDefault(128)),
    backend: backendFlag,
  },
  (a) =>
    Effect.gen(function* () {
      const named = join(runsFolder(), a.target)
      const dir = existsSync(named) ? named : resolve(a.target)
      const backend = yield* chooseBackend(Option.getOrUndefined(a.backend))
      yield* Console.error(`backend: ${backend.name} (${backend.detail})`)
      const report = yield* depthReport(dir, {
        thresholds: a.thresholds,
        generate: a.generate,
        ...(Option.isSome(a.measure) ? { measure: a.measure.value } : {}),
        ...(Option.isSome(a.tokens) ? { tokens: a.tokens.value } : {}),
      })
      yield* Console.log(`${dir}\n\n${report}`)
    }),
).pipe(Command.withDescription("Dynamic-depth tables of trained runs: pruning, early-exit thresholds, generation speed"))

runCommand(import.meta.url, command)
