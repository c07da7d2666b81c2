import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { command as expCommand } from "../../src/cli/exp.js"
import { command as patternCommand } from "../../src/cli/pattern.js"
import { command as reportCommand } from "../../src/cli/report.js"
import { snapshot } from "../files.js"
import { runInProcess } from "./in-process.js"
import { root } from "./process.js"

/**
 * Nothing a name, a flag or a file can do destroys a finished run or writes outside the runs
 * folder: names that are path components, `--out` into a directory that is not a run, a
 * derived run aimed at its own source, `--fresh` at a finished run.
 */
const tmp = () => mkdtempSync(join(tmpdir(), "run-safety-"))
const runs = tmp()
process.env["TINYSTORIES_RUNS"] = runs
const exp = (argv: string[]) => runInProcess(expCommand, argv)

const dsl = join(root, "dsl/index.ts")
const lib = join(root, "src/index.ts")
/** An experiment file named `name` whose `models` (and the rest) is given as source text. */
const experimentFile = (body: string, name = "mine"): string => {
  const file = join(tmp(), `${name}.ts`)
  writeFileSync(
    file,
    `import { attention, block, decoder, depth, ffn } from ${JSON.stringify(dsl)}\n` +
      `import { adamw, constant, experiment, magnitude, prune, tinystories } from ${JSON.stringify(lib)}\n` +
      `const small = () => decoder({ vocab: 512, width: 32, context: 32, layers: depth(2, block({ attention: attention("full", { heads: 2 }), ffn: ffn("gelu") })) })\n` +
      `const train = { data: tinystories({ tokenizer: { bpe: 512 } }), budget: { steps: 2 }, batch: 4, optimizer: adamw({ lr: constant(1e-3) }), eval: { every: 100, tokens: 512 }, sample: { tokens: 4 } }\n` +
      body,
  )
  return file
}

const specOf = (dir: string) => JSON.parse(readFileSync(join(dir, "spec.json"), "utf8")) as Record<string, unknown>
const everything = () => snapshot(runs)

describe("names are checked where they are decoded", { timeout: 120_000 }, () => {
  it.each([
    ["a variant named ../smoke", `export default experiment({ description: "", models: { "../smoke": small() }, ...train })`, /at \["models","\.\.\/smoke"\]: the variant's name "\.\.\/smoke" cannot name a run directory/],
    ["a variant named ledger", `export default experiment({ description: "", models: { ledger: small() }, ...train })`, /at \["models","ledger"\]: the variant's name "ledger" is reserved/],
    ["a negative seed", `export default experiment({ description: "", models: small(), ...train, seeds: [1, -1] })`, /at \["seeds",1\]: expected a seed: an integer in \[0, 4294967295\], got -1/],
  ])("refuses %s before anything is written", async (_name, body, message) => {
    const before = everything()
    const r = await exp([experimentFile(body)])
    expect(r.code, r.stderr).toBe(1)
    expect(r.stderr).toMatch(message)
    expect(everything()).toEqual(before)
  })

  it("refuses an experiment file named after a directory the runs folder keeps (ledger)", async () => {
    const r = await exp([experimentFile(`export default experiment({ description: "", models: small(), ...train })`, "ledger")])
    expect(r.code, r.stderr).toBe(1)
    expect(r.stderr).toMatch(/the experiment's name "ledger" is reserved for the runs folder's own ledger directory; choose another name \(rename the file\)/)
    expect(existsSync(join(runs, "ledger", "spec.json"))).toBe(false)
  })

  it.each([
    ["experiment", "../../../../somewhere", /at \["experiment"\]: "\.\.\/\.\.\/\.\.\/\.\.\/somewhere" cannot name a run directory/],
    ["variant", "../smoke", /at \["variant"\]: "\.\.\/smoke" cannot be a run's variant: expected 1–200 characters without "\/"/],
    ["experiment", "report", /at \["experiment"\]: "report" is reserved/],
    ["seed", -3, /at \["seed"\]/],
  ])("refuses a replayed spec.json whose %s is %j", async (field, value, message) => {
    const spec = JSON.parse(readFileSync(join(root, "test/cli/fixtures/smoke-spec.json"), "utf8")) as Record<string, unknown>
    const dir = tmp()
    const file = join(dir, "spec.json")
    writeFileSync(file, JSON.stringify({ ...spec, [field]: value }))
    const before = everything()
    const r = await exp([file])
    expect(r.code, r.stderr).toBe(1)
    expect(r.stderr).toMatch(message)
    expect(everything()).toEqual(before)
    expect(readdirSync(dir)).toEqual(["spec.json"])
  })
})

describe("what --out and --fresh may touch", { timeout: 300_000 }, () => {
  const smoke = ["smoke", "--steps", "3", "--checkpoint-every", "2"]
  let finished: string
  beforeAll(async () => {
    finished = tmp()
    const r = await exp([...smoke, "--out", finished])
    expect(r.code, r.stderr).toBe(0)
  })

  it("refuses --out at a directory that holds no run, and touches none of its files", async () => {
    const mine = tmp()
    writeFileSync(join(mine, "tokenizer.json"), "my own tokenizer")
    writeFileSync(join(mine, "metrics.jsonl"), "my own metrics\n")
    const before = snapshot(mine)
    const r = await exp([...smoke, "--out", mine])
    expect(r.code, r.stderr).toBe(1)
    expect(r.stderr).toMatch(new RegExp(`${mine}: is not empty and holds no run \\(metrics.jsonl, tokenizer.json\\); a run is written only into an empty directory or one holding the same run`))
    expect(snapshot(mine)).toEqual(before)
    // --fresh changes nothing about it.
    expect((await exp([...smoke, "--out", mine, "--fresh"])).code).toBe(1)
    expect(snapshot(mine)).toEqual(before)
  })

  it("runs a finished run again without writing anything, and refuses --fresh at it", async () => {
    const before = snapshot(finished)
    const again = await exp([...smoke, "--out", finished])
    expect(again.code, again.stderr).toBe(0)
    expect(again.stderr).toMatch(/already finished; nothing to train/)
    expect(snapshot(finished)).toEqual(before)
    const fresh = await exp([...smoke, "--out", finished, "--fresh"])
    expect(fresh.code, fresh.stderr).toBe(1)
    expect(fresh.stderr).toMatch(/holds a finished run; --fresh discards only an unfinished run's checkpoint/)
    expect(snapshot(finished)).toEqual(before)
  })

  it("refuses a finished run of another spec, with or without --fresh, listing the differences", async () => {
    const before = snapshot(finished)
    const other = await exp(["smoke", "--steps", "5", "--out", finished])
    expect(other.code, other.stderr).toBe(1)
    expect(other.stderr).toMatch(/holds a finished run of another spec \(spec hash [0-9a-f]+, this one is [0-9a-f]+\), which is never overwritten/)
    expect(other.stderr).toMatch(/budget\.steps: 3 → 5/)
    expect((await exp(["smoke", "--steps", "5", "--out", finished, "--fresh"])).code).toBe(1)
    expect(snapshot(finished)).toEqual(before)
  })

  it("puts a seed that is not the experiment's own in a directory of its own", async () => {
    const before = snapshot(finished)
    const r = await exp([...smoke, "--seed", "2", "--out", finished])
    expect(r.code, r.stderr).toBe(0)
    expect(specOf(join(finished, "seed2"))).toMatchObject({ experiment: "smoke", seed: 2 })
    const { ...after } = snapshot(finished)
    for (const k of Object.keys(after)) if (k.startsWith("seed2/")) delete after[k]
    expect(after).toEqual(before)
  })

  it("never writes a run into the run it prunes, even with --fresh", async () => {
    // The source is where the pruning experiment looks for it: runs/smoke.
    const source = join(runs, "smoke")
    mkdirSync(runs, { recursive: true })
    cpSync(finished, source, { recursive: true })
    const before = snapshot(source)
    const file = experimentFile(`export default experiment({ description: "", models: prune({ source: "smoke", method: magnitude({ sparsity: 0.5 }) }), ...train })`)
    for (const flags of [[], ["--fresh"]]) {
      const r = await exp([file, "--out", source, ...flags])
      expect(r.code, r.stderr).toBe(1)
      expect(r.stderr).toMatch(new RegExp(`${source}: is this run's pruning source, which it only reads; a run that another run reads is never written, whatever the flags`))
      expect(snapshot(source)).toEqual(before)
    }
    // Elsewhere it prunes as usual.
    const out = tmp()
    const ok = await exp([file, "--out", out])
    expect(ok.code, ok.stderr).toBe(0)
    expect(snapshot(source)).toEqual(before)
  })

  it("writes a report page only where no run and no other file would be lost", async () => {
    const report = (out: string) => runInProcess(reportCommand, [finished, "--out", out])
    const elsewhere = join(tmp(), "notes.md")
    writeFileSync(elsewhere, "my notes")
    const before = snapshot(finished)
    for (const [out, message] of [
      [join(finished, "summary.json"), /exists and is not a report page/],
      [join(finished, "page.html"), new RegExp(`is inside the run directory ${finished}, which this command never writes into`)],
      [elsewhere, /exists and is not a report page/],
      [finished, /is a directory/],
    ] as const) {
      const r = await report(out)
      expect(r.code, r.stderr).toBe(2)
      expect(r.stderr, r.stderr).toMatch(message)
    }
    expect(snapshot(finished)).toEqual(before)
    expect(readFileSync(elsewhere, "utf8")).toBe("my notes")
    // A page replaces a page.
    const page = join(tmp(), "page.html")
    for (let i = 0; i < 2; i++) {
      const r = await report(page)
      expect(r.code, r.stderr).toBe(0)
      expect(readFileSync(page, "utf8").startsWith("<!doctype html>")).toBe(true)
    }
  })

  it("draws a pattern picture only where no run and no other file would be lost", async () => {
    const draw = (out: string) => runInProcess(patternCommand, ["full", "--context", "8", "--out", out])
    const before = snapshot(finished)
    for (const [out, message] of [
      [join(finished, "summary.json"), /exists and is not a PNG picture/],
      [join(finished, "full.png"), /is inside the run directory/],
    ] as const) {
      const r = await draw(out)
      expect(r.code, r.stderr).toBe(2)
      expect(r.stderr, r.stderr).toMatch(message)
    }
    expect(snapshot(finished)).toEqual(before)
    const picture = join(tmp(), "full.png")
    for (let i = 0; i < 2; i++) expect((await draw(picture)).code).toBe(0)
    expect(readFileSync(picture).subarray(1, 4).toString()).toBe("PNG")
  })
})
