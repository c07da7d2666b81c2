import { Console, Data, Effect, FileSystem, Path } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { variantOrder } from "../experiment/load.js"
import { ledgerDir, readLedger, unrecordedRuns } from "../train/ledger.js"
import { runsFolder } from "../io/paths.js"
import { ledgerHeader, ledgerRows, now } from "../report/ledger-view.js"
import { markdownTable, resultOf, resultsTable } from "../report/results.js"
import { checkSummary, type SummaryCheck } from "../report/summary.js"
import { ioReason } from "../errors/io-error.js"
import { findRunFiles } from "../io/walk-runs.js"
import { runCommand, UsageError } from "./boundary.js"

/**
 * `npm run results -- <experiment | dir>...`: the results table of finished runs, read from
 * the summary.json files under runs/<experiment> (or the given directories), without
 * loading a model or evaluating anything. Rows follow the experiment file's variant order
 * when the target names one, and the alphabet otherwise. `--all [experiment...]` lists the
 * ledger instead: every run that ever finished in the runs folder, marked where its code or
 * data has changed since, and the finished runs there that lack a record.
 */
class ResultsError extends Data.TaggedError("ResultsError")<{ readonly message: string }> {}

const summariesUnder = (dir: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    if (!(yield* fs.exists(dir).pipe(Effect.orElseSucceed(() => false))))
      return yield* new ResultsError({ message: `${dir} does not exist; give an experiment name with runs in runs/, or a run directory` })
    const files = yield* findRunFiles(dir, ["summary.json"]).pipe(Effect.mapError((message) => new ResultsError({ message })))
    if (files.length === 0) return yield* new ResultsError({ message: `no finished runs (summary.json) under ${dir}` })
    // A summary that cannot be read leaves its run out, and a field that is not what the table expects reads n/a: each is a warning naming the file.
    const checked = yield* Effect.forEach(files, (f) =>
      fs.readFileString(f).pipe(
        Effect.mapError((e) => `cannot read ${f}: ${ioReason(e)}; its run is left out`),
        Effect.flatMap((text) => Effect.try({ try: (): unknown => JSON.parse(text), catch: () => `${f} is not JSON; its run is left out` })),
        Effect.map((raw) => checkSummary(raw, f, { page: false })),
        Effect.orElseSucceed((warning): SummaryCheck => ({ _tag: "Skipped", warning })),
      ),
    )
    for (const c of checked) for (const w of c._tag === "Read" ? c.warnings : [c.warning]) yield* Console.error(`warning: ${w}`)
    const summaries = checked.flatMap((c) => (c._tag === "Read" ? [c.summary] : []))
    if (summaries.length === 0) return yield* new ResultsError({ message: `no readable summary.json under ${dir}` })
    return summaries
  })

/** `--all`: the ledger, every run ever finished in the runs folder (only the named experiments', when given). */
const ledgerTable = (experiments: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const folder = runsFolder()
    const ledger = yield* readLedger(folder)
    for (const problem of ledger.unreadable) yield* Console.error(`warning: ${problem}`)
    const unrecorded = (yield* unrecordedRuns(folder, ledger.records)).filter((r) => experiments.length === 0 || experiments.includes(r.experiment))
    // Finished runs whose record a failed write left missing: running their command again records them.
    const missing = unrecorded.length === 0 ? "" : `finished runs without a ledger record (run their experiment again to record them):\n${unrecorded.map((r) => `  ${r.dir}`).join("\n")}\n`
    if (ledger.records.length === 0 && missing === "") return yield* new ResultsError({ message: `no ledger records in ${ledgerDir(folder)}: no run has finished there yet` })
    const state = yield* now(ledger.records)
    const rows = ledgerRows(ledger.records, state, experiments)
    if (rows.length === 0 && missing === "") return yield* new ResultsError({ message: `no ledger records for ${experiments.join(", ")} in ${ledgerDir(folder)}` })
    yield* Console.log(`${ledgerDir(folder)}\n\n${rows.length === 0 ? "no records\n" : `${markdownTable(ledgerHeader, rows)}\n`}${missing === "" ? "" : `\n${missing}`}`)
  })

export const command = Command.make(
  "results",
  {
    targets: Argument.String("experiment-or-dir").pipe(Argument.withDescription("an experiment name (runs/<name>) or a directory of runs; with --all, experiments to keep"), Argument.variadic()),
    all: Flag.Boolean("all").pipe(Flag.withDescription("every run ever finished, from the ledger, with what changed since"), Flag.withDefault(false)),
  },
  (a) =>
    Effect.gen(function* () {
      const path = yield* Path.Path
      const fs = yield* FileSystem.FileSystem
      if (a.all) return yield* ledgerTable(a.targets)
      if (a.targets.length === 0) return yield* new UsageError({ message: "give an experiment name or a directory of runs, or --all for every run in the ledger" })
      for (const target of a.targets) {
        const named = path.join(runsFolder(), target)
        const dir = (yield* fs.exists(named).pipe(Effect.orElseSucceed(() => false))) ? named : path.resolve(target)
        const order = yield* variantOrder(target)
        const rank = (v: string) => (order.includes(v) ? order.indexOf(v) : order.length)
        const summaries = [...(yield* summariesUnder(dir))].sort((a, b) => rank(a.variant) - rank(b.variant))
        yield* Console.log(`${dir}\n\n${resultsTable(summaries.map(resultOf))}\n`)
      }
    }),
).pipe(Command.withDescription("Tabulate finished runs from their summary.json files"))

runCommand(import.meta.url, command)
