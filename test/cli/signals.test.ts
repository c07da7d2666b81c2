import { type ChildProcess, spawn } from "node:child_process"
import { cpSync, existsSync, mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { NodeServices } from "@effect/platform-node"
import { Effect, Option } from "effect"
import { describe, expect, it } from "vitest"
import { LOCK_FILE } from "../../src/io/run-lock.js"
import { loadCheckpoint } from "../../src/train/checkpoint.js"
import { command, type Done, root } from "./process.js"

/**
 * Signals as a user sends them: to `npm run exp` (which forwards SIGINT and SIGTERM to the
 * trainer, and forwards nothing when it dies of SIGHUP or SIGKILL), and to eval, whose loop
 * must stop between batches rather than finish first.
 */
const tmp = () => mkdtempSync(join(tmpdir(), "signals-"))
const npm = (args: string[]): { child: ChildProcess; done: Promise<Done> } => {
  const child = spawn("npm", ["run", "--silent", ...args], { cwd: root })
  let stderr = ""
  let stdout = ""
  child.stderr!.on("data", (d) => (stderr += d))
  child.stdout!.on("data", (d) => (stdout += d))
  return { child, done: new Promise((resolve) => child.on("close", (code, signal) => resolve({ code, signal, stderr, stdout }))) }
}
const waitFor = async (cond: () => boolean, ms = 120_000): Promise<void> => {
  const until = Date.now() + ms
  while (!cond()) {
    if (Date.now() > until) throw new Error("timed out waiting")
    await new Promise((r) => setTimeout(r, 50))
  }
}
const rowsIn = (dir: string) => (existsSync(join(dir, "metrics.jsonl")) ? readFileSync(join(dir, "metrics.jsonl"), "utf8").split("\n").length - 1 : 0)
const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}
const checkpointStep = (dir: string) =>
  Effect.runPromise(loadCheckpoint(dir).pipe(Effect.map(Option.map((c) => c.state.step)), Effect.provide(NodeServices.layer)))

/** Starts `npm run exp smoke` into a new directory and waits until it trains; gives the trainer's pid from its lock. */
const training = async () => {
  const out = tmp()
  const run = npm(["exp", "smoke", "--", "--steps", "2000", "--checkpoint-every", "1000", "--out", out])
  await waitFor(() => rowsIn(out) >= 3)
  const trainer = (JSON.parse(readFileSync(join(out, LOCK_FILE), "utf8")) as { pid: number }).pid
  expect(trainer).not.toBe(run.child.pid)
  return { out, run, trainer }
}

describe("signals", { timeout: 300_000 }, () => {
  it("SIGTERM to the npm process stops the trainer with a checkpoint, exit 143, and nothing left running", async () => {
    const { out, run, trainer } = await training()
    run.child.kill("SIGTERM")
    const r = await run.done
    expect(r.code, r.stderr).toBe(143)
    expect(alive(trainer)).toBe(false)
    const stopped = Number(/Stopped at step (\d+)\/2000; checkpoint saved/.exec(r.stderr)?.[1])
    expect(stopped).toBeGreaterThanOrEqual(3)
    expect(await checkpointStep(out)).toEqual(Option.some(stopped))
    expect(r.stderr).toContain("Resume with: npm run exp smoke -- --steps 2000 --checkpoint-every 1000 --out")
    expect(r.stderr).toContain("stopped by SIGTERM")
    expect(existsSync(join(out, LOCK_FILE))).toBe(false)
  })

  it("the trainer stops with a checkpoint when the npm process dies of SIGHUP (which npm does not forward)", async () => {
    const { out, run, trainer } = await training()
    run.child.kill("SIGHUP")
    const r = await run.done
    // npm itself died of the signal; the trainer noticed its parent was gone.
    expect(r.signal).toBe("SIGHUP")
    await waitFor(() => !alive(trainer), 30_000)
    const stopped = Number(/Stopped at step (\d+)\/2000; checkpoint saved/.exec(r.stderr)?.[1])
    expect(r.stderr).toContain("stopped: the parent process ended")
    expect(await checkpointStep(out)).toEqual(Option.some(stopped))
    expect(existsSync(join(out, LOCK_FILE))).toBe(false)
  })

  it("eval stops between batches on SIGTERM with exit 143, printing no result", async () => {
    const dir = join(tmp(), "run")
    cpSync(join(root, "test/fixtures/pre-stack/gpt2"), dir, { recursive: true })
    // The whole validation split: about a thousand batches.
    const run = command("src/cli/eval.ts", [dir, "--tokens", "1000000"])
    let stderr = ""
    run.child.stderr!.on("data", (d) => (stderr += d))
    await waitFor(() => /evaluating \d/.test(stderr))
    const sent = Date.now()
    run.child.kill("SIGTERM")
    const r = await run.done
    expect(Date.now() - sent).toBeLessThan(5_000)
    expect(r.code, r.stderr).toBe(143)
    expect(r.stdout).toBe("")
    expect(r.stderr).toContain("stopped by SIGTERM")
    expect(r.stderr).not.toMatch(/evaluating 100\.0%/)
  })
})
