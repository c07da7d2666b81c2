import { NodeServices } from "@effect/platform-node"
import { Console, Effect, Layer } from "effect"
import type { Command } from "effect/cli"
import { commandProgram, outcome } from "../../src/cli/boundary.js"
import { ProgressSink } from "../../src/io/progress.js"

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

/** `env` is set in this process's environment while the command runs, as a spawned command would see it, then restored. */
export const runInProcess = async (command: Command.Command<any, any, any, any, any>, argv: string[], env: Record<string, string> = {}): Promise<InProcess> => {
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]))
  Object.assign(process.env, env)
  try {
    return await runHere(command, argv)
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k]
      else process.env[k] = v
    }
  }
}

const runHere = async (command: Command.Command<any, any, any, any, any>, argv: string[]): Promise<InProcess> => {
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


/** A stack trace line, as Node prints them. */
export const stackLine = /\n\s+at .*(:\d+:\d+|\(native\))/
