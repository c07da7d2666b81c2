import { type ChildProcess, spawn } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Rng } from "../../src/random/rng.js"

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


/** The step of a run directory's checkpoint, if it has a readable one. */
export const stepOf = (dir: string): number | undefined => {
  const file = join(dir, "checkpoint", "state.json")
  try {
    return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as { step: number }).step : undefined
  } catch {
    return undefined
  }
}

export const waitFor = async (cond: () => boolean, ms = 180_000): Promise<void> => {
  const until = Date.now() + ms
  while (!cond()) {
    if (Date.now() > until) throw new Error("timed out waiting")
    await new Promise((r) => setTimeout(r, 10))
  }
}

/** The last step a run directory's metrics.jsonl has logged (0 before the first). */
const loggedStep = (dir: string): number => {
  const file = join(dir, "metrics.jsonl")
  if (!existsSync(file)) return 0
  const lines = readFileSync(file, "utf8").trim().split("\n")
  for (let i = lines.length - 1; i >= 0; i--) {
    try {
      return (JSON.parse(lines[i]!) as { step: number }).step
    } catch {
      // A line being written: the one before it is whole.
    }
  }
  return 0
}

/**
 * SIGKILLs a run training into `dir` after its checkpoint of step `after`, once it has logged
 * a random step short of the last its straight twin (finished in `straight`) logged, so the
 * kill lands while it trains whatever the machine's speed (a bound in time did not: a twin
 * timed under load outlasted the run), and checks that it did.
 */
export const killMidRun = async (run: { child: ChildProcess; done: Promise<Done> }, dir: string, straight: string, after = 4): Promise<Done> => {
  const last = loggedStep(straight)
  const at = after + Rng.fromSeed(Date.now()).nextInt(Math.max(1, last - after - 2))
  await waitFor(() => (stepOf(dir) ?? 0) >= after && loggedStep(dir) >= at)
  run.child.kill("SIGKILL")
  const done = await run.done
  if (existsSync(join(dir, "summary.json"))) throw new Error(`${dir}: the kill came after the run had finished`)
  if (done.signal !== "SIGKILL") throw new Error(`${dir}: the run ended before the kill (${done.code}): ${done.stderr}`)
  return done
}
