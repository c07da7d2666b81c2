import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { command as expCommand } from "../../src/cli/exp.js"
import { command as resultsCommand } from "../../src/cli/results.js"
import { snapshot } from "../files.js"
import { runInProcess } from "./in-process.js"
import { root } from "./process.js"

/**
 * A run that tunes on held-out training stories: it evaluates on them, says so in its log,
 * metrics, summary, ledger record and results table, and a count out of range is refused
 * before anything is trained.
 */
const tmp = () => mkdtempSync(join(tmpdir(), "tune-cli-"))
const data = tmp()
const names = ["Tom", "Lily", "Ben", "Sue", "Max"]
const things = ["ball", "cat", "tree", "boat", "cake"]
const TRAIN = Array.from({ length: 30 }, (_, i) => `${names[i % 5]} saw a ${things[(i * 3) % 5]} by the sea. It was story ${i}, and ${names[(i + 2) % 5]} was happy.`)
const write = (name: string, stories: readonly string[]) => writeFileSync(join(data, name), stories.map((s) => `${s}\n<|endoftext|>\n`).join(""))
write("train.txt", TRAIN)
write("valid.txt", ["The cat ran to the park.", "A song for the dog."])
const runs = tmp()
process.env["TINYSTORIES_DIR"] = data
process.env["TINYSTORIES_CACHE"] = tmp()
process.env["TINYSTORIES_RUNS"] = runs

const dsl = join(root, "dsl/index.ts")
const lib = join(root, "src/index.ts")
const experimentFile = (name: string, tune: string): string => {
  const file = join(tmp(), `${name}.ts`)
  writeFileSync(
    file,
    `import { attention, block, decoder, depth, ffn } from ${JSON.stringify(dsl)}\n` +
      `import { adamw, constant, experiment, tinystories } from ${JSON.stringify(lib)}\n` +
      `export default experiment({ description: "", models: decoder({ vocab: 300, width: 16, context: 16, layers: depth(1, block({ attention: attention("full", { heads: 2 }), ffn: ffn("gelu") })) }),\n` +
      `  data: tinystories({ tokenizer: { bpe: 300 }, tune: ${tune} }), budget: { steps: 2, bpb: 1000 }, batch: 2, optimizer: adamw({ lr: constant(1e-3) }), eval: { every: 1, tokens: 64 }, sample: { tokens: 2 } })\n`,
  )
  return file
}

describe("npm run exp with tune", { timeout: 120_000 }, () => {
  it("evaluates on the held-out stories and records which text it evaluated in the log, metrics, summary, ledger and results", async () => {
    const file = experimentFile("tuned", "{ stories: 3 }")
    const listing = await runInProcess(expCommand, [file, "--print"])
    expect(listing.stdout + listing.stderr).toContain("budget: 2 steps, or until tune bpb ≤ 1000")
    const r = await runInProcess(expCommand, [file])
    expect(r.code, r.stderr).toBe(0)
    const text = "tune (last 3 train stories)"
    expect(r.stderr).toContain("holding out stories of train.txt 100.0%")
    expect(r.stderr).toMatch(/step 1: train loss \S+, tune loss \S+, tune bpb \S+/)
    expect(r.stderr).toMatch(/reached tune bpb 1000 at step 1/)
    expect(r.stderr).toMatch(new RegExp(`loss \\S+, bpb \\S+ on tune \\(last 3 train stories\\)\n`))
    expect(r.stderr).toContain(`target bpb on ${text} 1000: reached at step 1`)
    const dir = join(runs, "tuned")
    const summary = JSON.parse(readFileSync(join(dir, "summary.json"), "utf8"))
    expect(summary.evalText).toBe(text)
    const evals = readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((row) => row.valBpb !== undefined)
    expect(evals.length).toBeGreaterThan(0)
    for (const row of evals) expect(row.evalText).toBe(text)
    expect(JSON.parse(readFileSync(join(dir, "spec.json"), "utf8")).training.data.tune).toEqual({ stories: 3 })
    const ledger = readdirSync(join(runs, "ledger")).map((f) => JSON.parse(readFileSync(join(runs, "ledger", f), "utf8")))
    expect(ledger.find((rec) => rec.experiment === "tuned").data.tune).toEqual({ stories: 3 })
    const results = await runInProcess(resultsCommand, ["tuned"])
    expect(results.code, results.stderr).toBe(0)
    expect(results.stdout).toContain(`| bpb on ${text} |`)
    expect(results.stdout).not.toContain("val bpb")
  })

  it.each([
    ["no stories", "{ stories: 0 }", /at \["training","data","tune","stories"\]: .*0/],
    ["a fraction of a story", "{ stories: 1.5 }", /at \["training","data","tune","stories"\]: Expected an integer/],
    ["every story of train.txt", `{ stories: ${TRAIN.length} }`, new RegExp(`training\\.data\\.tune\\.stories: ${TRAIN.length} leaves no story to train on: .*train\\.txt holds ${TRAIN.length}; expected fewer than ${TRAIN.length}`)],
  ])("refuses %s before anything is trained, naming the field", async (_name, tune, message) => {
    const before = snapshot(runs)
    const r = await runInProcess(expCommand, [experimentFile("refused", tune)])
    expect(r.code, r.stderr).toBe(1)
    expect(r.stderr).toMatch(message)
    expect(r.stderr.match(/error: /g)).toHaveLength(1)
    expect(snapshot(runs)).toEqual(before)
  })
})
