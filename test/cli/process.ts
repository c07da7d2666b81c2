import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

/** A command of the project run as a user runs it: its own process, from the repository root. */
export const root = join(import.meta.dirname, "../..")

export interface Done {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stderr: string
  readonly stdout: string
}

/** The runs folder of commands started by tests (unless a test names one), so they never write into the user's runs/ ledger. */
export const testRunsFolder = mkdtempSync(join(tmpdir(), "test-runs-"))

export const command = (script: string, args: string[], env: Record<string, string> = {}): { child: ChildProcess; done: Promise<Done> } => {
  const child = spawn(process.execPath, ["--import", "tsx", script, ...args], { cwd: root, env: { ...process.env, TINYSTORIES_RUNS: testRunsFolder, ...env } })
  let stderr = ""
  let stdout = ""
  child.stderr!.on("data", (d) => (stderr += d))
  child.stdout!.on("data", (d) => (stdout += d))
  const done = new Promise<Done>((resolve) => child.on("close", (code, signal) => resolve({ code, signal, stderr, stdout })))
  return { child, done }
}
