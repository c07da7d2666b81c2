import { Effect, Exit } from "effect"
import { CliError } from "effect/cli"
import { describe, expect, it } from "vitest"
import { outcome, UsageError } from "../../src/cli/boundary.js"
import { RunError } from "../../src/train/run-options.js"
import { located } from "../../src/errors/unexpected.js"

/** The boundary's verdict on how a command ended: exit code and the one message on stderr. */
const exitOf = <E>(effect: Effect.Effect<void, E>) => Effect.runSyncExit(effect)

describe("the command boundary", () => {
  it("exits 0 on success and when only --help was shown", () => {
    expect(outcome(Exit.void, { debug: false })).toEqual({ code: 0, stderr: "" })
    expect(outcome(exitOf(Effect.fail(new CliError.ShowHelp({ commandPath: ["eval"], errors: [] }))), { debug: false })).toEqual({ code: 0, stderr: "" })
  })

  it("prints an expected failure's one message, exit 1", () => {
    expect(outcome(exitOf(Effect.fail(new RunError({ problem: "the loss became NaN" }))), { debug: false })).toEqual({ code: 1, stderr: "error: the loss became NaN" })
  })

  it("exits 2 for usage errors, its own and effect/cli's", () => {
    expect(outcome(exitOf(Effect.fail(new UsageError({ message: "--prompt is empty" }))), { debug: false })).toEqual({ code: 2, stderr: "error: --prompt is empty" })
    const parse = new CliError.ShowHelp({ commandPath: ["eval"], errors: [new CliError.UnrecognizedOption({ option: "--bogus", suggestions: [], command: ["eval"] })] })
    const r = outcome(exitOf(Effect.fail(parse)), { debug: false })
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/^error: .*--bogus/)
  })

  it("says what failed, where and what to do for an unexpected exception; the stack only with --debug", () => {
    const crash = Effect.sync((): void => {
      throw new TypeError("Cannot read properties of undefined (reading 'make')")
    }).pipe(located({ step: 12 }), located({ experiment: "experiments/x.ts", runDir: "/runs/x" }))
    const plain = outcome(exitOf(crash), { debug: false })
    expect(plain.code).toBe(1)
    expect(plain.stderr).toBe(
      "error: unexpected failure: TypeError: Cannot read properties of undefined (reading 'make')\n" +
        "  in experiment experiments/x.ts, run directory /runs/x, step 12\n" +
        "hint: this looks like a bug; rerun with --debug for the stack trace and report it",
    )
    // --debug: the stack of the exception itself, from where it was thrown.
    expect(outcome(exitOf(crash), { debug: true }).stderr).toMatch(/\nTypeError: Cannot read properties of undefined \(reading 'make'\)\n\s+at .*boundary\.test\.ts:\d+/)
  })

  it("names running out of memory as such", () => {
    const r = outcome(exitOf(Effect.die(new RangeError("Array buffer allocation failed"))), { debug: false })
    expect(r.stderr).toMatch(/^error: unexpected failure: RangeError: Array buffer allocation failed\nhint: memory or a size limit ran out/)
  })

  it("exits 128 + the signal that stopped the command", () => {
    const interrupted = exitOf(Effect.interrupt)
    expect(outcome(interrupted, { debug: false, signal: "SIGINT" })).toEqual({ code: 130, stderr: "stopped by SIGINT" })
    expect(outcome(interrupted, { debug: false, signal: "SIGTERM" })).toEqual({ code: 143, stderr: "stopped by SIGTERM" })
    expect(outcome(interrupted, { debug: false, signal: "SIGHUP", parentGone: true })).toEqual({ code: 129, stderr: "stopped: the parent process ended" })
    // Interrupted without a signal is still a failure, never a silent exit.
    expect(outcome(interrupted, { debug: false })).toEqual({ code: 1, stderr: "error: the command was interrupted" })
  })
})
