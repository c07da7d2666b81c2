import { realpathSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { NodeServices } from "@effect/platform-node"
import { Cause, Data, Effect, Exit, Layer } from "effect"
import { CliError, CliOutput, Command } from "effect/cli"
import { describeWhere, Unexpected } from "../errors/unexpected.js"
import { ProgressSink } from "../io/progress.js"
import { watchParent } from "./parent-watch.js"

/**
 * The one top-level error boundary every command runs in (exp, eval, generate, results, data,
 * pattern). Nothing ends silently:
 *
 * - exit 0: done;
 * - exit 1: a failure; an expected one (bad experiment, corrupt checkpoint, full disk, ...)
 *   prints its one message, an unexpected one (a thrown exception) prints what failed, where
 *   (experiment, run directory, step) and a hint;
 * - exit 2: a usage error (unknown flag, a value out of its range), with the usage line;
 * - exit 128 + signal when stopped by one: 129 SIGHUP (or the parent process ended), 130
 *   SIGINT, 143 SIGTERM. The program is interrupted, so its finalizers run (the trainer saves a
 *   checkpoint) before the process exits.
 *
 * `--debug`, accepted by every command, adds the full cause with stack traces.
 */
export class UsageError extends Data.TaggedError("UsageError")<{ readonly message: string }> {}

export type StopSignal = "SIGHUP" | "SIGINT" | "SIGTERM"
const signalCodes: Readonly<Record<StopSignal, number>> = { SIGHUP: 129, SIGINT: 130, SIGTERM: 143 }

export interface Outcome {
  readonly code: number
  /** What goes to stderr, without a trailing newline; empty when nothing does. */
  readonly stderr: string
}

const messageOf = (e: unknown): string => {
  const message = (e as { message?: unknown } | null)?.message
  return typeof message === "string" && message !== "" ? message : String(e)
}

/** Failures that mean memory or a size limit ran out rather than a bug. */
const sizeProblem = /Array buffer allocation failed|Invalid (typed )?array length|Invalid string length|out of memory|std::bad_alloc/i

const unexpected = (defect: unknown): string[] => {
  const where = defect instanceof Unexpected ? describeWhere(defect.where) : ""
  const inner = defect instanceof Unexpected ? defect.defect : defect
  const what = inner instanceof Error ? `${inner.name === "Error" ? "" : `${inner.name}: `}${inner.message}` : messageOf(inner)
  const hint = sizeProblem.test(what)
    ? "hint: memory or a size limit ran out; make the model, batch or context smaller (the memory estimate is printed by `npm run exp <name> -- --print`)"
    : "hint: this looks like a bug; rerun with --debug for the stack trace and report it"
  return [`error: unexpected failure: ${what}`, ...(where !== "" ? [`  in ${where}`] : []), hint]
}

/** What --debug adds for one reason: the stack of the error, or of the defect an Unexpected wraps. */
const stackOf = (reason: Cause.Reason<unknown>): string => {
  const value = Cause.isFailReason(reason) ? reason.error : Cause.isDieReason(reason) ? (reason.defect instanceof Unexpected ? reason.defect.defect : reason.defect) : "interrupted"
  return value instanceof Error && value.stack !== undefined ? value.stack : String(value)
}

/** The exit code and stderr text of a finished command; `signal` is the one that stopped it. */
export const outcome = (exit: Exit.Exit<unknown, unknown>, o: { readonly debug: boolean; readonly signal?: StopSignal; readonly parentGone?: boolean }): Outcome => {
  if (Exit.isSuccess(exit)) return { code: 0, stderr: "" }
  const lines: string[] = []
  let usageError = false
  let failed = false
  for (const reason of exit.cause.reasons) {
    if (Cause.isFailReason(reason)) {
      const e = reason.error
      // --help is a ShowHelp without errors: the help is already printed, nothing failed.
      const usageErrors = CliError.isCliError(e) ? (e._tag === "ShowHelp" ? e.errors : [e]) : e instanceof UsageError ? [e] : undefined
      if (usageErrors !== undefined) {
        lines.push(...usageErrors.map((x) => `error: ${messageOf(x)}`))
        usageError ||= usageErrors.length > 0
      } else {
        lines.push(`error: ${messageOf(e)}`)
        failed = true
      }
    } else if (Cause.isDieReason(reason)) {
      lines.push(...unexpected(reason.defect))
      failed = true
    }
  }
  const interruptedOnly = !usageError && !failed && Cause.hasInterrupts(exit.cause)
  if (o.signal !== undefined) lines.push(o.parentGone ? "stopped: the parent process ended" : `stopped by ${o.signal}`)
  else if (interruptedOnly) lines.push("error: the command was interrupted")
  if (o.debug) lines.push(...exit.cause.reasons.map(stackOf))
  const code = o.signal !== undefined ? signalCodes[o.signal] : usageError ? 2 : failed || interruptedOnly ? 1 : 0
  return { code, stderr: lines.join("\n") }
}

type Services = NodeServices.NodeServices | ProgressSink

/**
 * Runs `program` (given the arguments without `--debug`) as this process's main program and
 * exits with its outcome. SIGINT, SIGTERM and SIGHUP, and the end of the parent process,
 * interrupt it once; repeats are ignored while it stops (`npm run` forwards the terminal's
 * Ctrl-C that the process group already received, so the trainer sees it twice).
 */
export const runMain = (program: (argv: ReadonlyArray<string>) => Effect.Effect<void, unknown, Services>): void => {
  const all = process.argv.slice(2)
  const debug = all.includes("--debug")
  const argv = all.filter((a) => a !== "--debug")
  // A closed stdout or stderr (a pager quit, a terminal hung up) must not crash a checkpoint save.
  for (const stream of [process.stdout, process.stderr]) stream.on("error", () => {})
  const fiber = Effect.runFork(program(argv).pipe(Effect.provide(Layer.mergeAll(NodeServices.layer, ProgressSink.stderr))))
  const keepAlive = setInterval(() => {}, 2 ** 31 - 1)
  let signal: StopSignal | undefined
  let parentGone = false
  const stop = (s: StopSignal) => {
    if (signal !== undefined) return
    signal = s
    fiber.interruptUnsafe(fiber.id)
  }
  const signals: StopSignal[] = ["SIGINT", "SIGTERM", "SIGHUP"]
  for (const s of signals) process.on(s, stop)
  const unwatch = watchParent(() => {
    parentGone = true
    stop("SIGHUP")
  })
  fiber.addObserver((exit) => {
    clearInterval(keepAlive)
    unwatch()
    const result = outcome(exit, { debug, ...(signal !== undefined ? { signal } : {}), parentGone })
    if (result.stderr !== "") process.stderr.write(result.stderr + "\n")
    if (result.code !== 0) process.exit(result.code)
    for (const s of signals) process.removeListener(s, stop)
  })
}

/**
 * The arguments with a value that starts with a dash and a digit ("-1/2", "-1,0") joined to the
 * flag before it (`--shard=-1/2`): effect/cli reads negative numbers as values but anything else
 * as short flags (-1 -/ -2), which hides what was wrong with the value. No flag here is a digit.
 */
export const dashValuesJoined = (argv: ReadonlyArray<string>): string[] => {
  const end = argv.indexOf("--")
  const flags = end === -1 ? argv : argv.slice(0, end)
  const joined: string[] = []
  for (const arg of flags) {
    const before = joined[joined.length - 1]
    if (/^-[\d.]/.test(arg) && before !== undefined && /^--[^=]+$/.test(before)) joined[joined.length - 1] = `${before}=${arg}`
    else joined.push(arg)
  }
  return end === -1 ? joined : [...joined, ...argv.slice(end)]
}

/**
 * An effect/cli command as a program over its arguments. A usage error, effect/cli's parse
 * errors and a command's own UsageError alike, is one line on stderr, and the usage line (not
 * the whole help) on stdout, where effect/cli prints help; `--help` prints the full help.
 */
export const commandProgram =
  <const Name extends string, I, C, E, R extends Services>(command: Command.Command<Name, I, C, E, R>) =>
  (argv: ReadonlyArray<string>): Effect.Effect<void, unknown, Services> => {
    const helpAsked = argv.includes("--help") || argv.includes("-h")
    const formatter = CliOutput.defaultFormatter()
    const brief = CliOutput.layer({
      ...formatter,
      formatHelpDoc: (doc) => (helpAsked ? formatter.formatHelpDoc(doc) : `usage: ${doc.usage} (--help lists every flag)`),
    })
    const run = Command.runWith(command, { version: "0.1.0", renderErrors: false })
    // effect/cli prints the usage for its own parse errors; `--help` prints it (briefly) for ours.
    return run(dashValuesJoined(argv)).pipe(
      Effect.tapError((e) => (e instanceof UsageError ? Effect.ignore(run(["--help"])) : Effect.void)),
      Effect.provide(brief),
    ) as Effect.Effect<void, unknown, Services>
  }

/** Whether the module at `url` is the script node was started with, rather than imported (by a test). */
export const isMain = (url: string): boolean => {
  const script = process.argv[1]
  try {
    return script !== undefined && realpathSync(script) === realpathSync(fileURLToPath(url))
  } catch {
    return false
  }
}

/** Runs an effect/cli command as this process's main program when its module is the entry point. */
export const runCommand = <const Name extends string, I, C, E, R extends Services>(url: string, command: Command.Command<Name, I, C, E, R>): void => {
  if (isMain(url)) runMain(commandProgram(command))
}
