import { NodeServices } from "@effect/platform-node"
import { Effect } from "effect"
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { ledgerDir, readLedger } from "../../src/experiment/ledger.js"
import { Rng } from "../../src/random/rng.js"
import { command } from "../cli/process.js"

const tmp = () => mkdtempSync(join(tmpdir(), "ledger-test-"))
const read = (folder: string) => Effect.runPromise(readLedger(folder).pipe(Effect.provide(NodeServices.layer)))
const writer = (folder: string, name: string, count: number) => command("test/experiment/ledger-writer.ts", [folder, name, String(count)])

describe("the ledger", { timeout: 120_000 }, () => {
  it("loses no record when two runs finish at the same time", async () => {
    const folder = tmp()
    const [a, b] = await Promise.all([writer(folder, "a", 30).done, writer(folder, "b", 30).done])
    expect(a.code, a.stderr).toBe(0)
    expect(b.code, b.stderr).toBe(0)
    const ledger = await read(folder)
    expect(ledger.unreadable).toEqual([])
    const seen = ledger.records.map((r) => `${r.variant}/${r.seed}`).sort()
    const expected = ["a", "b"].flatMap((w) => Array.from({ length: 30 }, (_, i) => `${w}/${i + 1}`)).sort()
    expect(seen).toEqual(expected)
    expect(ledger.records.every((r) => r.results.valBpb === r.seed / 2 && r.dir === `${r.variant}/seed${r.seed}`)).toBe(true)
  })

  it("holds only whole records after writers are killed mid-append", async () => {
    const folder = tmp()
    const rng = Rng.fromSeed(Date.now())
    let confirmed = 0
    for (let round = 0; round < 3; round++) {
      const w = writer(folder, `w${round}`, 100_000)
      let printed = 0
      w.child.stdout!.on("data", (d: Buffer) => (printed += d.toString().split("\n").filter((l) => l !== "").length))
      while (printed < 3) await new Promise((r) => setTimeout(r, 10))
      await new Promise((r) => setTimeout(r, rng.nextInt(200)))
      w.child.kill("SIGKILL")
      expect((await w.done).signal).toBe("SIGKILL")
      confirmed += printed
    }
    const ledger = await read(folder)
    expect(ledger.unreadable).toEqual([])
    // Every confirmed record is there; at most one per killed writer landed unconfirmed.
    expect(ledger.records.length).toBeGreaterThanOrEqual(confirmed)
    expect(ledger.records.length).toBeLessThanOrEqual(confirmed + 3)
    for (const r of ledger.records) expect(r.backendDetail.length).toBe(64_000)
    // What a kill leaves besides records is a writer's temporary file, which readers skip.
    for (const f of readdirSync(ledgerDir(folder))) expect(f).toMatch(/\.json$|\.json\.tmp-\d+-\d+$/)
  })

  it("reports a file that is not a record instead of failing or guessing", async () => {
    const folder = tmp()
    await writer(folder, "a", 1).done
    writeFileSync(join(ledgerDir(folder), "zz-broken.json"), '{"format": 1, "experim')
    const ledger = await read(folder)
    expect(ledger.records.map((r) => r.variant)).toEqual(["a"])
    expect(ledger.unreadable).toEqual([`${join(ledgerDir(folder), "zz-broken.json")}: not a ledger record`])
    expect(JSON.parse(readFileSync(join(ledgerDir(folder), readdirSync(ledgerDir(folder)).find((f) => f !== "zz-broken.json")!), "utf8")).code).toEqual({ commit: "c", dirty: false })
  })
})
