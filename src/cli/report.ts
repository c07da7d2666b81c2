import { Console, Effect, FileSystem, Option, Path } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { chooseBackend } from "../backend/select.js"
import { ledgerDir, readLedger } from "../train/ledger.js"
import { variantOrder } from "../experiment/load.js"
import { writeFileAtomic } from "../io/atomic-write.js"
import { outFileProblem } from "../io/out-file.js"
import { runsFolder } from "../io/paths.js"
import { experimentPage, metricsLimits } from "../report/experiment-page.js"
import { ledgerPage, now } from "../report/ledger-view.js"
import { patternPng } from "../report/pattern-picture.js"
import { loadRuns, ReportError, runsFingerprint } from "../report/runs.js"
import { runCommand, UsageError } from "./boundary.js"
import { intFlag } from "./flags.js"

/**
 * `npm run report -- <experiment | dir>... [--out FILE] [--watch]`: one self-contained HTML
 * page of an experiment's runs (results, curves, models, samples); without a target (or with
 * --all), the index of every finished run in the ledger. --watch regenerates the page while
 * runs progress, and the page reloads itself.
 */
const patternCache = new Map<string, Buffer | string>()
const pattern = (spec: Parameters<typeof patternPng>[0], context: number): Buffer | string => {
  const key = `${context}:${JSON.stringify(spec)}`
  if (!patternCache.has(key)) {
    try {
      patternCache.set(key, patternPng(spec, context))
    } catch (e) {
      patternCache.set(key, (e as Error).message)
    }
  }
  return patternCache.get(key)!
}

const resolveTargets = (targets: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    return yield* Effect.forEach(targets, (t) =>
      Effect.map(fs.exists(path.join(runsFolder(), t)).pipe(Effect.orElseSucceed(() => false)), (named) => (named && !t.includes("/") ? path.join(runsFolder(), t) : path.resolve(t))),
    )
  })

/** A page replaces only a page. */
const reportPage = { name: "report page", starts: (head: Uint8Array) => new TextDecoder().decode(head.subarray(0, 15)).toLowerCase() === "<!doctype html>" }

const write = (out: string, html: string) => writeFileAtomic(out, html, { makeDirectory: true }).pipe(Effect.mapError((e) => new ReportError({ message: e.message })))

export const command = Command.make(
  "report",
  {
    targets: Argument.String("experiment-or-dir").pipe(Argument.withDescription("an experiment name (its folder in the runs folder) or directories of runs; none: the ledger's index"), Argument.variadic()),
    all: Flag.Boolean("all").pipe(Flag.withDescription("the index of every finished run (the ledger)"), Flag.withDefault(false)),
    out: Flag.String("out").pipe(Flag.withDescription("the HTML file to write (default <runs folder>/report/<name>.html)"), Flag.optional),
    watch: Flag.Boolean("watch").pipe(Flag.withDescription("regenerate as metrics arrive; the page reloads itself"), Flag.withDefault(false)),
    interval: intFlag("interval", { min: 1, max: 86_400 }).pipe(Flag.withDescription("seconds between checks with --watch"), Flag.withDefault(10)),
  },
  (a) =>
    Effect.gen(function* () {
      const path = yield* Path.Path
      const folder = runsFolder()
      const problem = Option.isSome(a.out) ? yield* outFileProblem(a.out.value, reportPage) : undefined
      if (problem !== undefined) return yield* new UsageError({ message: problem })
      if (a.all || a.targets.length === 0) {
        const ledger = yield* readLedger(folder)
        if (ledger.records.length === 0) return yield* new ReportError({ message: `no ledger records in ${ledgerDir(folder)}: no run has finished there yet` })
        const out = Option.getOrElse(a.out, () => path.join(folder, "report", "index.html"))
        yield* write(out, ledgerPage(ledger.records, yield* now(ledger.records), { folder, unreadable: ledger.unreadable, generatedAt: new Date() }))
        return yield* Console.log(path.resolve(out))
      }
      // Attention patterns are measured by running the kinds (a few seconds each on the native backend).
      yield* chooseBackend()
      const roots = yield* resolveTargets(a.targets)
      const order = (yield* Effect.forEach(a.targets, variantOrder)).flat()
      const name = a.targets.length === 1 ? path.basename(roots[0]!) : "report"
      const out = path.resolve(Option.getOrElse(a.out, () => path.join(folder, "report", `${name}.html`)))
      const generate = Effect.gen(function* () {
        const { runs, warnings } = yield* loadRuns(roots, metricsLimits)
        for (const w of warnings) yield* Console.error(`warning: ${w}`)
        const html = yield* Effect.promise(() =>
          experimentPage(runs, { title: a.targets.join(", "), variantOrder: order, pattern, generatedAt: new Date(), warnings, ...(a.watch ? { reloadSeconds: a.interval } : {}) }),
        )
        yield* write(out, html)
      })
      let seen = yield* runsFingerprint(roots)
      yield* generate
      yield* Console.log(out)
      while (a.watch) {
        yield* Effect.sleep(`${a.interval} seconds`)
        const current = yield* runsFingerprint(roots)
        if (current === seen) continue
        seen = current
        // A run folder caught mid-change (a directory being removed, say) is tried again at the next check.
        yield* generate.pipe(
          Effect.andThen(Console.error(`${new Date().toISOString().slice(11, 19)} updated ${out}`)),
          Effect.catch((e: ReportError) => Console.error(`${new Date().toISOString().slice(11, 19)} not updated: ${e.message}`)),
        )
      }
    }),
).pipe(Command.withDescription("Write an HTML report of an experiment's runs, or of every finished run"))

runCommand(import.meta.url, command)
