import { createHash } from "node:crypto"
import { readdirSync, readFileSync, statSync } from "node:fs"
import { join } from "node:path"
import { NodeServices } from "@effect/platform-node"
import { Console, Effect, Layer } from "effect"
import type { Command } from "effect/cli"
import { commandProgram, outcome } from "../../src/cli/boundary.js"
import { ProgressSink } from "../../src/report/progress.js"

/**
 * A command run in this process through the same boundary as `npm run`: the command's
 * program, its exit code and stderr as the process would print them (what the program wrote
 * with Console.error, then the boundary's message). Spawning costs seconds a case; this does
 * not, for the many bad-input cases that never reach the process-level parts (signals, exit).
 */
export interface InProcess {
  readonly code: number
  readonly stderr: string
  readonly stdout: string
}

export const runInProcess = async (command: Command.Command<any, any, any, any, any>, argv: string[]): Promise<InProcess> => {
  const stderr: string[] = []
  const stdout: string[] = []
  const format = (args: ReadonlyArray<unknown>) => args.map((a) => (typeof a === "string" ? a : String(a))).join(" ")
  const console: Console.Console = Object.assign(Object.create(globalThis.console) as Console.Console, {
    log: (...args: ReadonlyArray<unknown>) => void stdout.push(format(args)),
    error: (...args: ReadonlyArray<unknown>) => void stderr.push(format(args)),
  })
  const progress = Layer.succeed(ProgressSink, { isTTY: false, columns: () => 80, write: (t: string) => void stderr.push(t.trimEnd()), now: () => performance.now() })
  const exit = await Effect.runPromiseExit(
    commandProgram(command)(argv).pipe(Effect.provideService(Console.Console, console), Effect.provide(Layer.merge(NodeServices.layer, progress))) as Effect.Effect<void, unknown>,
  )
  const result = outcome(exit, { debug: false })
  return { code: result.code, stderr: [...stderr, ...(result.stderr === "" ? [] : [result.stderr])].join("\n"), stdout: stdout.join("\n") }
}

/** Every file under `dir` (relative path → size and sha256), to show a refused command changed nothing. */
export const snapshot = (dir: string): Record<string, string> => {
  const out: Record<string, string> = {}
  const walk = (d: string, rel: string) => {
    for (const name of readdirSync(d).sort()) {
      const full = join(d, name)
      if (statSync(full).isDirectory()) walk(full, `${rel}${name}/`)
      else out[`${rel}${name}`] = createHash("sha256").update(readFileSync(full)).digest("hex")
    }
  }
  walk(dir, "")
  return out
}

/** A stack trace line, as Node prints them. */
export const stackLine = /\n\s+at .*(:\d+:\d+|\(native\))/
