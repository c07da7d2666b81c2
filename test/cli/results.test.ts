import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { spawn } from "node:child_process"
import { NodeServices } from "@effect/platform-node"
import { Effect } from "effect"
import { command as resultsCommand } from "../../src/cli/results.js"
import { appendLedger, ledgerRecord } from "../../src/train/ledger.js"
import type { Summary } from "../../src/experiment/summary.js"
import { tinyRun } from "../train/fixtures.js"
import { runInProcess } from "./in-process.js"
import { command } from "./process.js"

const results = (args: string[]) => command("src/cli/results.ts", args).done

/** A finished run's summary.json with the fields a results table reads. */
const summary = (variant: string, seed: number, valBpb: number) => ({
  experiment: "t",
  variant,
  seed,
  valLoss: 2 * valBpb,
  valBpb,
  lengths: { "512": { loss: 0, bpb: valBpb + 0.5 } },
  tokensPerSecond: 100,
  tokensTrained: 1000,
  params: { total: 2000, nonEmbedding: 1000, embedding: 1000 },
})

describe("npm run results", () => {
  it("tabulates the summary.json files under a directory, seeds pooled per variant", async () => {
    const dir = mkdtempSync(join(tmpdir(), "results-cli-"))
    for (const [variant, seed, bpb] of [["b", 1, 1.5], ["b", 2, 1.7], ["a", 1, 2]] as const) {
      mkdirSync(join(dir, variant, `seed${seed}`), { recursive: true })
      writeFileSync(join(dir, variant, `seed${seed}`, "summary.json"), JSON.stringify(summary(variant, seed, bpb)))
    }
    const done = await results([dir])
    expect(done.code).toBe(0)
    const rows = done.stdout.split("\n").filter((l) => l.startsWith("| a") || l.startsWith("| b"))
    expect(rows).toEqual([
      "| a | 1 | 2000 / 1000 | 1000 | 4.0000 | 2.0000 | 2.0000 | 2.5000 | 100 |",
      "| b | 2 | 2000 / 1000 | 1000 | 3.2000 ± 0.2828 | 1.6000 ± 0.1414 | 1.5000, 1.7000 | 2.1000 ± 0.1414 | 100 |",
    ])
  })

  it("says what is missing, with a non-zero exit", async () => {
    const empty = mkdtempSync(join(tmpdir(), "results-cli-"))
    const none = await results([empty])
    expect(none.code).toBe(1)
    expect(none.stderr).toContain(`no finished runs (summary.json) under ${empty}`)
    const absent = await results([join(empty, "nope")])
    expect(absent.code).toBe(1)
    expect(absent.stderr).toContain("does not exist")
  })

  it("leaves out a figure that is malformed (n/a) or a run whose summary is unreadable, with a warning naming its file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "results-cli-"))
    const write = (variant: string, content: object | string) => {
      mkdirSync(join(dir, variant, "seed1"), { recursive: true })
      writeFileSync(join(dir, variant, "seed1", "summary.json"), typeof content === "string" ? content : JSON.stringify(content))
    }
    write("pruned", { ...summary("pruned", 1, 1.5), trainLoss: null, tokensTrained: 0, pruning: { sparsity: 0.5, sourceTokens: 1000 } })
    write("strings", { ...summary("strings", 1, 1.5), valLoss: "3" })
    write("nulls", { ...summary("nulls", 1, 1.5), valBpb: null })
    write("torn", '{"variant": "torn", "valB')
    write("nameless", { ...summary("nameless", 1, 1.5), variant: 7 })
    const done = await runInProcess(resultsCommand, [dir])
    expect(done.code, done.stderr).toBe(0)
    const file = (v: string) => join(dir, v, "seed1", "summary.json")
    expect(done.stderr.split("\n").sort()).toEqual([
      `warning: ${file("nameless")}: variant is 7, expected a string; its run is left out`,
      `warning: ${file("nulls")}: valBpb is null, expected a number; shown as n/a`,
      `warning: ${file("strings")}: valLoss is "3", expected a number; shown as n/a`,
      `warning: ${file("torn")} is not JSON; its run is left out`,
    ])
    const rows = done.stdout.split("\n").filter((l) => /^\| [a-z]+ \| \d/.test(l))
    // Columns: variant, seeds, params, tokens, val loss, val bpb, bpb@512, sparsity, tokens/s.
    expect(rows).toEqual([
      "| nulls | 1 | 2000 / 1000 | 1000 | 3.0000 | n/a | 2.0000 | n/a | 100 |",
      "| pruned | 1 | 2000 / 1000 | 1000 + 0 | 3.0000 | 1.5000 | 2.0000 | 0.5000 | n/a |",
      "| strings | 1 | 2000 / 1000 | 1000 | n/a | 1.5000 | 2.0000 | n/a | 100 |",
    ])
  })
})

describe("npm run results -- --all", () => {
  it("lists the finished runs in the runs folder that the ledger has no record of", async () => {
    const folder = mkdtempSync(join(tmpdir(), "results-all-"))
    const all = async (args: string[]) => {
      const saved = process.env["TINYSTORIES_RUNS"]
      process.env["TINYSTORIES_RUNS"] = folder
      try {
        return await runInProcess(resultsCommand, ["--all", ...args])
      } finally {
        if (saved === undefined) delete process.env["TINYSTORIES_RUNS"]
        else process.env["TINYSTORIES_RUNS"] = saved
      }
    }
    const finished = (dir: string, specHash: string) => {
      mkdirSync(join(folder, dir), { recursive: true })
      writeFileSync(join(folder, dir, "summary.json"), JSON.stringify({ ...summary("a", 1, 1.5), experiment: "t", specHash }))
    }
    finished("lost/seed1", "h2")
    const alone = await all([])
    expect(alone.code, alone.stderr).toBe(0)
    expect(alone.stdout).toContain("no records\n\nfinished runs without a ledger record (run their experiment again to record them):\n  lost/seed1\n")

    finished("a/seed1", "h")
    const record = ledgerRecord(tinyRun({ steps: 1 }), { ...summary("a", 1, 1.5), specHash: "h", wallSeconds: 1, backend: "cpu", backendDetail: "", steps: 1 } as unknown as Summary, { dir: "a/seed1", dataHash: "d", code: undefined, finishedAt: new Date() })
    await Effect.runPromise(appendLedger(folder, record).pipe(Effect.provide(NodeServices.layer)))
    const both = await all([])
    expect(both.code, both.stderr).toBe(0)
    expect(both.stdout).toMatch(/\| t \| a \| 1 \|/)
    expect(both.stdout).toMatch(/without a ledger record .*:\n {2}lost\/seed1\n*$/)
    expect((await all(["other"])).code).toBe(1)
  })
})

describe("npm run results while a run writes", () => {
  it("reads the finished runs while another run swaps its checkpoint directories", async () => {
    const dir = mkdtempSync(join(tmpdir(), "results-cli-"))
    for (const variant of ["a", "b"]) {
      mkdirSync(join(dir, variant, "seed1"), { recursive: true })
      writeFileSync(join(dir, variant, "seed1", "summary.json"), JSON.stringify(summary(variant, 1, 1.5)))
    }
    // A run in b/seed2 saving checkpoints as fast as it can: checkpoint.next/ and checkpoint.prev/ come and go.
    const running = join(dir, "b", "seed2")
    mkdirSync(running, { recursive: true })
    const churn = spawn(process.execPath, [
      "-e",
      `const fs = require("node:fs"); const d = ${JSON.stringify(running)};
       for (;;) for (const c of ["checkpoint.next", "checkpoint.prev"]) { fs.mkdirSync(d + "/" + c + "/x", { recursive: true }); fs.writeFileSync(d + "/" + c + "/x/f", "x"); fs.rmSync(d + "/" + c, { recursive: true, force: true }) }`,
    ])
    try {
      await new Promise((r) => setTimeout(r, 300))
      for (let i = 0; i < 50; i++) {
        const r = await runInProcess(resultsCommand, [dir])
        expect(r.code, r.stderr).toBe(0)
        expect(r.stdout.split("\n").filter((l) => /^\| [ab] \|/.test(l))).toHaveLength(2)
      }
    } finally {
      churn.kill("SIGKILL")
    }
  })
})
