import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Console, Data, Effect, FileSystem, Option, Path } from "effect"
import { Argument, Command } from "effect/cli"
import { expandRuns, loadExperiment } from "../experiment/load.js"
import { runsRoot } from "../experiment/run-path.js"
import { resultOf, resultsTable } from "../report/results.js"
import type { Summary } from "../train/run.js"
import { failWith } from "./fail.js"

/**
 * `npm run results -- <experiment | dir>...`: the results table of finished runs, read from
 * the summary.json files under runs/<experiment> (or the given directories), without
 * loading a model or evaluating anything. Rows follow the experiment file's variant order
 * when the target names one, and the alphabet otherwise.
 */
class ResultsError extends Data.TaggedError("ResultsError")<{ readonly message: string }> {}

const summariesUnder = (dir: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    if (!(yield* fs.exists(dir).pipe(Effect.orElseSucceed(() => false))))
      return yield* new ResultsError({ message: `${dir} does not exist; give an experiment name with runs in runs/, or a run directory` })
    const files = (yield* fs.readDirectory(dir, { recursive: true }).pipe(Effect.mapError((e) => new ResultsError({ message: `cannot list ${dir}: ${e.message}` }))))
      .filter((f) => path.basename(f) === "summary.json")
      .sort()
    if (files.length === 0) return yield* new ResultsError({ message: `no finished runs (summary.json) under ${dir}` })
    return yield* Effect.forEach(files, (f) =>
      fs.readFileString(path.join(dir, f)).pipe(
        Effect.flatMap((text) => Effect.try(() => JSON.parse(text) as Summary)),
        Effect.mapError(() => new ResultsError({ message: `${path.join(dir, f)} is not a readable summary` })),
      ),
    )
  })

/** The experiment's variants in the order it declares them; none when the target is not an experiment. */
const variantOrder = (target: string) =>
  loadExperiment(target).pipe(
    Effect.flatMap((loaded) => expandRuns(loaded, {})),
    Effect.map((runs) => [...new Set(runs.map((r) => r.variant))]),
    Effect.option,
    Effect.map(Option.getOrElse((): string[] => [])),
  )

const command = Command.make(
  "results",
  { targets: Argument.String("experiment-or-dir").pipe(Argument.withDescription("an experiment name (runs/<name>) or a directory of runs"), Argument.atLeast(1)) },
  (a) =>
    Effect.gen(function* () {
      const path = yield* Path.Path
      const fs = yield* FileSystem.FileSystem
      for (const target of a.targets) {
        const named = path.join(runsRoot(), target)
        const dir = (yield* fs.exists(named).pipe(Effect.orElseSucceed(() => false))) ? named : path.resolve(target)
        const order = yield* variantOrder(target)
        const rank = (v: string) => (order.includes(v) ? order.indexOf(v) : order.length)
        const summaries = [...(yield* summariesUnder(dir))].sort((a, b) => rank(a.variant) - rank(b.variant))
        yield* Console.log(`${dir}\n\n${resultsTable(summaries.map(resultOf))}\n`)
      }
    }).pipe(failWith),
).pipe(Command.withDescription("Tabulate finished runs from their summary.json files"))

Command.run(command, { version: "0.1.0" }).pipe(
  Effect.provide(NodeServices.layer),
  NodeRuntime.runMain({ disableErrorReporting: true }),
)
