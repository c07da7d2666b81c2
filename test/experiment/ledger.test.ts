import * as tf from "@tensorflow/tfjs"
import { NodeServices } from "@effect/platform-node"
import { Console, Effect, Exit, Layer } from "effect"
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { attention, block, depth, ffn } from "../../dsl/index.js"
import { keptBlocks } from "../../src/orchestration/depth-variants.js"
import { deriveRun } from "../../src/orchestration/derive-run.js"
import type { RunSpec } from "../../src/experiment/define.js"
import { appendLedger, ledgerDir, readLedger, unrecordedRuns } from "../../src/train/ledger.js"
import { Rng } from "../../src/random/rng.js"
import { ProgressSink } from "../../src/io/progress.js"
import { trainRun } from "../../src/train/run.js"
import { command } from "../cli/process.js"
import { syntheticData, tinyRun } from "../train/fixtures.js"
import { writerRecord } from "./ledger-records.js"

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
    await Effect.runPromise(appendLedger(folder, writerRecord("a", 1)).pipe(Effect.provide(NodeServices.layer)))
    writeFileSync(join(ledgerDir(folder), "zz-broken.json"), '{"format": 1, "experim')
    // A whole record whose fields the readers show are of the wrong type, or missing.
    const good = JSON.parse(readFileSync(join(ledgerDir(folder), readdirSync(ledgerDir(folder))[0]!), "utf8"))
    writeFileSync(join(ledgerDir(folder), "zz-fields.json"), JSON.stringify({ ...good, results: { ...good.results, valLoss: "3.1" }, data: undefined, code: { commit: 7 } }))
    const ledger = await read(folder)
    expect(ledger.records.map((r) => r.variant)).toEqual(["a"])
    expect(ledger.unreadable).toEqual([
      `${join(ledgerDir(folder), "zz-broken.json")}: not a ledger record`,
      `${join(ledgerDir(folder), "zz-fields.json")}: a ledger record with a missing or malformed results.valLoss, data.extra, data.hash, code`,
    ])
    expect(JSON.parse(readFileSync(join(ledgerDir(folder), readdirSync(ledgerDir(folder)).find((f) => !f.startsWith("zz-"))!), "utf8")).code).toEqual({ commit: "c", dirty: false })
  })
})

/** Runs trained in this process into a runs folder's ledger, with what they said on stderr. */
const said: string[] = []
const quiet = Layer.succeed(ProgressSink, { isTTY: false, columns: () => 80, write: () => {}, now: () => performance.now() })
const console = Object.assign(Object.create(globalThis.console) as Console.Console, { error: (...args: ReadonlyArray<unknown>) => void said.push(args.join(" ")) })
const effect = <A, E>(e: Effect.Effect<A, E, any>) =>
  Effect.runPromiseExit(Effect.scoped(e).pipe(Effect.provideService(Console.Console, console), Effect.provide(Layer.merge(NodeServices.layer, quiet))) as Effect.Effect<A, E>)
const train = (run: RunSpec, out: string, runsFolder?: string) =>
  effect(trainRun(run, syntheticData(), { out, fresh: false, backend: { name: "cpu", detail: "test" }, resumeCommand: "(the test's command)", ...(runsFolder === undefined ? {} : { ledger: { runsFolder, code: undefined } }) }))
const unrecorded = (folder: string, records: Awaited<ReturnType<typeof read>>["records"]) =>
  Effect.runPromise(unrecordedRuns(folder, records).pipe(Effect.provide(NodeServices.layer)))

describe("finished runs and their records", () => {
  beforeAll(async () => {
    await tf.setBackend("cpu")
  })

  it("records a run that trains no steps (a summarised derived run) once, however often it is run again", async () => {
    const folder = tmp()
    const source = join(tmp(), "source")
    const model = depth(2, block({ attention: attention("full", { heads: 2 }), ffn: ffn("gelu") }))
    expect(Exit.isSuccess(await train(tinyRun({ steps: 2, layers: model }), source))).toBe(true)
    const out = join(folder, "derived")
    const derived = await effect(deriveRun(source, out, (run) => keptBlocks(run.model, [0], "0")))
    if (Exit.isFailure(derived)) throw new Error(String(derived.cause))
    for (let i = 0; i < 3; i++) expect(Exit.isSuccess(await train(derived.value, out, folder))).toBe(true)
    const { records } = await read(folder)
    expect(records.map((r) => [r.dir, r.variant, r.results.steps])).toEqual([["derived", "base, blocks 0", 2]])
    expect(records[0]!.finishedAt).toBe(JSON.parse(readFileSync(join(out, "summary.json"), "utf8")).finishedAt)
  })

  it("gives a run whose record could not be written its record on the next invocation, once, and lists it until then", async () => {
    const folder = tmp()
    const out = join(folder, "test", "base")
    // A plain file where the ledger's folder goes: the record cannot be written.
    writeFileSync(ledgerDir(folder), "")
    const failed = await train(tinyRun({ steps: 2 }), out, folder)
    expect(Exit.isFailure(failed) && String(failed.cause)).toMatch(/test\/base finished \(summary\.json is written\), but its ledger record could not be written: .*\nRun the same command again to record it: \(the test's command\)/)
    expect(await unrecorded(folder, [])).toEqual([{ dir: join("test", "base"), experiment: "test" }])

    rmSync(ledgerDir(folder))
    said.length = 0
    expect(Exit.isSuccess(await train(tinyRun({ steps: 2 }), out, folder))).toBe(true)
    expect(said).toContain(`${out}: the ledger had no record of this finished run; added it`)
    expect(Exit.isSuccess(await train(tinyRun({ steps: 2 }), out, folder))).toBe(true)
    const { records } = await read(folder)
    expect(records.map((r) => r.dir)).toEqual([join("test", "base")])
    expect(await unrecorded(folder, records)).toEqual([])
  })

  it("takes a summary written before summaries said when they finished as recorded when its directory and spec have a record", async () => {
    const folder = tmp()
    const out = join(folder, "old")
    expect(Exit.isSuccess(await train(tinyRun({ steps: 1 }), out, folder))).toBe(true)
    const { finishedAt: _, ...old } = JSON.parse(readFileSync(join(out, "summary.json"), "utf8"))
    writeFileSync(join(out, "summary.json"), JSON.stringify(old))
    expect(Exit.isSuccess(await train(tinyRun({ steps: 1 }), out, folder))).toBe(true)
    const { records } = await read(folder)
    expect(records).toHaveLength(1)
    expect(await unrecorded(folder, records)).toEqual([])
    mkdirSync(join(folder, "other"))
    writeFileSync(join(folder, "other", "summary.json"), JSON.stringify({ ...old, specHash: "another" }))
    expect(await unrecorded(folder, records)).toEqual([{ dir: "other", experiment: "test" }])
  })
})
