import * as tf from "@tensorflow/tfjs"
import { NodeServices } from "@effect/platform-node"
import { Console, Effect, Exit, Layer, type FileSystem } from "effect"
import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { outcome } from "../../src/cli/boundary.js"
import { ProgressSink } from "../../src/io/progress.js"
import { trainRun } from "../../src/train/run.js"
import type { RunOptions } from "../../src/train/run-options.js"
import type { RunData } from "../../src/train/run-data.js"
import type { RunSpec } from "../../src/experiment/define.js"
import { fullDiskAfter } from "./full-disk.js"
import { syntheticData, tinyRun, crashingAfter } from "./fixtures.js"

/**
 * Faults in the middle of a run: a metrics line torn by a kill or a full disk, and writes that
 * fail with ENOSPC at any point (spec, metrics, checkpoint). Each is reported in plain words
 * naming the file, and the run then resumes and finishes byte-identical to one never disturbed.
 */
beforeAll(async () => {
  await tf.setBackend("cpu")
})

const messages: string[] = []
const quiet = Layer.succeed(ProgressSink, { isTTY: false, columns: () => 80, write: () => {}, now: () => performance.now() })
const options = (out: string): RunOptions => ({ out, fresh: false, backend: { name: "cpu", detail: "test" }, resumeCommand: "(test)" })
const runIn = (run: RunSpec, data: RunData, out: string, fs: Layer.Layer<FileSystem.FileSystem> = NodeServices.layer) =>
  Effect.runPromiseExit(
    Effect.scoped(trainRun(run, data, options(out))).pipe(
      Effect.provide(Layer.mergeAll(NodeServices.layer, fs, quiet)),
      Effect.provideService(Console.Console, Object.assign(Object.create(console) as Console.Console, { error: (...a: unknown[]) => void messages.push(a.join(" ")) })),
    ),
  )
const tmp = () => mkdtempSync(join(tmpdir(), "faults-"))
const bytes = (dir: string, file: string) => readFileSync(join(dir, "checkpoint", file))
/** Metrics rows without the wall-clock rate, which differs between any two runs. */
const rows = (dir: string) =>
  readFileSync(join(dir, "metrics.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => {
      const { tokensPerSecond: _, ...row } = JSON.parse(l) as Record<string, unknown>
      return row
    })
const failureOf = (exit: Exit.Exit<unknown, unknown>): string => {
  if (Exit.isSuccess(exit)) throw new Error("expected the run to fail")
  const reason = exit.cause.reasons.find((r) => r._tag === "Fail" || r._tag === "Die")
  return reason?._tag === "Fail" ? (reason.error as Error).message : reason?._tag === "Die" ? String(reason.defect) : String(exit.cause)
}


const run = tinyRun({ steps: 8, every: 2, evalEvery: 4 })
const straight = tmp()

describe("faults during a run", { timeout: 120_000 }, () => {
  beforeAll(async () => {
    expect(Exit.isSuccess(await runIn(run, syntheticData(), straight))).toBe(true)
  })

  it("drops and reports a torn metrics line, resumes, and ends byte-identical", async () => {
    const out = tmp()
    // 2 micro-batches a step: the crash hits step 6, after the checkpoint at step 4; step 5 is saved on the way out.
    const crashed = await runIn(run, crashingAfter(syntheticData(), 11), out)
    // An exception nobody anticipated is reported with where it happened.
    expect(outcome(crashed, { debug: false }).stderr).toBe(
      `error: unexpected failure: simulated crash\n  in run directory ${out}, step 6\nhint: this looks like a bug; rerun with --debug for the stack trace and report it`,
    )
    const metrics = join(out, "metrics.jsonl")
    // Then a kill inside the append of step 6's row: half a row, past the checkpoint.
    appendFileSync(metrics, '{"step":6,"tokens":3')
    messages.length = 0
    const resumed = await runIn(run, syntheticData(), out)
    expect(Exit.isSuccess(resumed), String(Exit.isFailure(resumed) && resumed.cause)).toBe(true)
    expect(messages.join("\n")).toContain(`${metrics}: dropped line 6, not JSON (a write cut short`)
    expect(bytes(out, "model.safetensors").equals(bytes(straight, "model.safetensors"))).toBe(true)
    expect(bytes(out, "optimizer.safetensors").equals(bytes(straight, "optimizer.safetensors"))).toBe(true)
    expect(rows(out)).toEqual(rows(straight))
  })

  it("reports a torn line on resume and keeps the rows it can read", async () => {
    const out = tmp()
    expect(Exit.isSuccess(await runIn(run, syntheticData(), out))).toBe(true)
    // Unfinished at its last checkpoint (killed before its summary was written), so it resumes there.
    rmSync(join(out, "summary.json"))
    const metrics = join(out, "metrics.jsonl")
    truncateSync(metrics, statSync(metrics).size - 40)
    messages.length = 0
    expect(Exit.isSuccess(await runIn(run, syntheticData(), out))).toBe(true)
    expect(messages.join("\n")).toContain(`${metrics}: dropped line 8`)
    expect(rows(out)).toEqual(rows(straight).slice(0, 7))
  })

  it("says 'no space left on device' with the file when a write fails, and resumes byte-identical once there is room", async () => {
    // Every write of a whole run, metered; then a disk that fills up in the middle of one write
    // of each file the run writes (its first write, and one late in the run).
    const meter = fullDiskAfter(Number.MAX_SAFE_INTEGER)
    expect(Exit.isSuccess(await runIn(run, syntheticData(), tmp(), meter.layer))).toBe(true)
    const name = (path: string) => path.replace(/^.*\//, "").replace(/\.(tmp-|\d+\.tmp).*$/, "")
    const names = [...new Set(meter.writes.map((w) => name(w.path)))]
    expect(names).toEqual(expect.arrayContaining(["run.lock", "spec.json", "tokenizer.json", "metrics.jsonl", "model.safetensors", "optimizer.safetensors", "state.json", "summary.json"]))
    for (const file of names) {
      const writes = meter.writes.filter((w) => name(w.path) === file && w.bytes > 1)
      for (const w of new Set([writes[0]!, writes[Math.floor((writes.length * 2) / 3)]!])) {
        const out = tmp()
        const message = failureOf(await runIn(run, syntheticData(), out, fullDiskAfter(w.before + Math.floor(w.bytes / 2)).layer))
        expect(message).toMatch(/no space left on device \(ENOSPC\)/)
        expect(message).toContain(file === "run.lock" ? out : file)
        messages.length = 0
        const resumed = await runIn(run, syntheticData(), out)
        expect(Exit.isSuccess(resumed), `${file}: ${Exit.isFailure(resumed) && resumed.cause}`).toBe(true)
        // A failed metrics append was cut back to the last whole line: nothing torn was left to drop.
        expect(messages.join("\n")).not.toContain("dropped")
        expect(bytes(out, "model.safetensors").equals(bytes(straight, "model.safetensors")), file).toBe(true)
        expect(bytes(out, "optimizer.safetensors").equals(bytes(straight, "optimizer.safetensors")), file).toBe(true)
        expect(rows(out), file).toEqual(rows(straight))
      }
    }
  })
})
