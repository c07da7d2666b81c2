import { Console, Data, Effect, FileSystem, Option, Path } from "effect"
import { Argument, Command } from "effect/cli"
import { expandRuns, loadExperiment } from "../experiment/load.js"
import { repoRoot } from "../io/paths.js"
import { resultOf, resultsTable } from "../report/results.js"
import type { Summary } from "../train/run.js"
import { errnoCode, ioReason } from "../errors/io-error.js"
import { runCommand } from "./boundary.js"

/**
 * `npm run results -- <experiment | dir>...`: the results table of finished runs, read from
 * the summary.json files under runs/<experiment> (or the given directories), without
 * loading a model or evaluating anything. Rows follow the experiment file's variant order
 * when the target names one, and the alphabet otherwise.
 */
class ResultsError extends Data.TaggedError("ResultsError")<{ readonly message: string }> {}

/**
 * The summary.json files under `dir`, found by walking its directories. A run that is training
 * renames and removes checkpoint directories as it goes: those are not entered, and an entry
 * that vanishes while the walk reaches it is skipped. summary.json itself is written atomically.
 */
const summaryFiles = (dir: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const found: string[] = []
    const walk = (d: string): Effect.Effect<void, ResultsError> =>
      Effect.gen(function* () {
        const names = yield* fs.readDirectory(d).pipe(
          Effect.map((n) => Option.some(n)),
          // The top directory must be readable; a subdirectory removed meanwhile is not an error.
          Effect.catch((e) => (d !== dir && errnoCode(e) === "ENOENT" ? Effect.succeed(Option.none<string[]>()) : Effect.fail(new ResultsError({ message: `cannot list ${d}: ${ioReason(e)}` })))),
        )
        if (Option.isNone(names)) return
        for (const name of [...names.value].sort()) {
          const full = path.join(d, name)
          if (name === "summary.json") found.push(full)
          else if (!name.startsWith("checkpoint")) {
            const info = yield* fs.stat(full).pipe(Effect.option)
            if (Option.isSome(info) && info.value.type === "Directory") yield* walk(full)
          }
        }
      })
    yield* walk(dir)
    return found
  })

const summariesUnder = (dir: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    if (!(yield* fs.exists(dir).pipe(Effect.orElseSucceed(() => false))))
      return yield* new ResultsError({ message: `${dir} does not exist; give an experiment name with runs in runs/, or a run directory` })
    const files = yield* summaryFiles(dir)
    if (files.length === 0) return yield* new ResultsError({ message: `no finished runs (summary.json) under ${dir}` })
    return yield* Effect.forEach(files, (f) =>
      fs.readFileString(f).pipe(
        Effect.mapError((e) => new ResultsError({ message: `cannot read ${f}: ${ioReason(e)}` })),
        Effect.flatMap((text) => Effect.try({ try: () => JSON.parse(text) as Summary, catch: () => new ResultsError({ message: `${f} is not a readable summary (not JSON)` }) })),
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

export const command = Command.make(
  "results",
  { targets: Argument.String("experiment-or-dir").pipe(Argument.withDescription("an experiment name (runs/<name>) or a directory of runs"), Argument.atLeast(1)) },
  (a) =>
    Effect.gen(function* () {
      const path = yield* Path.Path
      const fs = yield* FileSystem.FileSystem
      for (const target of a.targets) {
        const named = path.join(repoRoot(), "runs", target)
        const dir = (yield* fs.exists(named).pipe(Effect.orElseSucceed(() => false))) ? named : path.resolve(target)
        const order = yield* variantOrder(target)
        const rank = (v: string) => (order.includes(v) ? order.indexOf(v) : order.length)
        const summaries = [...(yield* summariesUnder(dir))].sort((a, b) => rank(a.variant) - rank(b.variant))
        yield* Console.log(`${dir}\n\n${resultsTable(summaries.map(resultOf))}\n`)
      }
    }),
).pipe(Command.withDescription("Tabulate finished runs from their summary.json files"))

runCommand(import.meta.url, command)
