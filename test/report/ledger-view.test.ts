import { NodeServices } from "@effect/platform-node"
import { Effect } from "effect"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { appendLedger, type LedgerRecord, ledgerRecord } from "../../src/train/ledger.js"
import type { CodeVersion } from "../../src/io/code-version.js"
import { changesSince, ledgerHeader, ledgerRows, type Now } from "../../src/report/ledger-view.js"
import type { Summary } from "../../src/experiment/summary.js"
import { command } from "../cli/process.js"
import { tinyRun } from "../train/fixtures.js"

const summary = (experiment: string, variant: string, seed: number, valBpb: number): Summary => ({
  experiment, variant, seed, specHash: "h", valLoss: 2 * valBpb, valBpb, valTokens: 1, lengths: {}, trainLoss: 1,
  params: { total: 3, nonEmbedding: 2, embedding: 1 }, flopsPerToken: { forward: 1, training: 3 }, tokenizer: "t", tokenizerHash: "th",
  tokenBudget: 1000, tokensTrained: 1000, steps: 1, wallSeconds: 90, trainSeconds: 1, tokensPerSecond: 1, backend: "cpu", backendDetail: "", machine: "m", sample: "",
})
const record = (experiment: string, variant: string, o: { code?: CodeVersion; dataHash?: string; extra?: boolean; tune?: number } = {}): LedgerRecord =>
  ledgerRecord({ ...tinyRun({ steps: 1 }), training: { ...tinyRun({ steps: 1 }).training, data: { source: "tinystories", tokenizer: { bpe: 512 }, extra: o.extra ?? false, ...(o.tune === undefined ? {} : { tune: { stories: o.tune } }) } } }, summary(experiment, variant, 1, 1.5), {
    dir: `${experiment}/${variant}`,
    dataHash: o.dataHash ?? "now",
    code: o.code,
    finishedAt: new Date(Date.UTC(2026, 0, 2, 3, 4)),
  })

describe("what changed since a run", () => {
  const now: Now = { codeChanged: new Map([["same", false], ["moved", true], ["foreign", undefined]]), dataHash: new Map([[false, "now"], [true, undefined]]) }
  it.each([
    ["nothing", record("e", "v", { code: { commit: "same", dirty: false } }), []],
    ["its code", record("e", "v", { code: { commit: "moved", dirty: false } }), ["code changed"]],
    ["uncommitted code at the time", record("e", "v", { code: { commit: "same", dirty: true } }), ["uncommitted code"]],
    ["a commit this clone lacks", record("e", "v", { code: { commit: "foreign", dirty: false } }), ["commit unknown here"]],
    ["no git at the time", record("e", "v"), ["code unknown"]],
    ["the data", record("e", "v", { code: { commit: "same", dirty: false }, dataHash: "before" }), ["data changed"]],
    ["data that is not here to compare", record("e", "v", { code: { commit: "moved", dirty: false }, dataHash: "before", extra: true }), ["code changed"]],
  ] as const)("marks %s", (_name, r, expected) => {
    expect(changesSince(r, now)).toEqual(expected)
  })

  it("marks the bpb of a run evaluated on held-out training stories, so the ledger never passes it off as valid.txt's", () => {
    const bpb = ledgerHeader.indexOf("val bpb")
    const [valid, tuned] = ledgerRows([record("e", "v"), record("e", "t", { tune: 250 })], now)
    expect(valid![bpb]).toBe("1.5000")
    expect(tuned![bpb]).toBe("1.5000 on tune (last 250 train stories)")
  })

  it("npm run results -- --all lists the ledger, filtered by experiment, with the changes marked", async () => {
    const folder = mkdtempSync(join(tmpdir(), "ledger-cli-"))
    const write = (r: LedgerRecord) => Effect.runPromise(appendLedger(folder, r).pipe(Effect.provide(NodeServices.layer)))
    await write(record("alpha", "a", { code: { commit: "0".repeat(40), dirty: false } }))
    await write(record("beta", "b", { code: { commit: "0".repeat(40), dirty: true } }))
    const all = await command("src/cli/results.ts", ["--all"], { TINYSTORIES_RUNS: folder }).done
    expect(all.code, all.stderr).toBe(0)
    const rows = all.stdout.split("\n").filter((l) => l.startsWith("| 2026"))
    expect(rows.length).toBe(2)
    expect(rows[0]).toMatch(/^\| 2026-01-02 03:04 \| alpha \| a \| 1 \| 1000 \| 3\.0000 \| 1\.5000 \| 0000000 \| cpu \| 1\.5 min \| commit unknown here(, data changed)? \|$/)
    expect(rows[1]).toMatch(/^\| 2026-01-02 03:04 \| beta \| b \| .* \| 0000000\+dirty \| .* \| uncommitted code/)
    const beta = await command("src/cli/results.ts", ["--all", "beta"], { TINYSTORIES_RUNS: folder }).done
    expect(beta.stdout.split("\n").filter((l) => l.startsWith("| 2026")).map((l) => l.split(" | ")[1])).toEqual(["beta"])
    const none = await command("src/cli/results.ts", ["--all", "gamma"], { TINYSTORIES_RUNS: folder }).done
    expect(none.code).toBe(1)
    expect(none.stderr).toContain("no ledger records for gamma")
  })
})
