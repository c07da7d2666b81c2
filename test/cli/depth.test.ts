import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { command as deriveCommand } from "../../src/cli/derive.js"
import { command as depthCommand } from "../../src/cli/depth.js"
import { command as evalCommand } from "../../src/cli/eval.js"
import { runInProcess } from "./in-process.js"
import { command, root } from "./process.js"

/**
 * `npm run depth` over two trained smoke runs (real TinyStories development data), one plain and
 * one with early exits, against the references it summarises: `npm run eval` of each run and of
 * the runs `npm run derive` makes from them (every other block; another exit threshold).
 */
const tmp = () => mkdtempSync(join(tmpdir(), "depth-cli-"))
const runs = tmp()
const tokens = "1024"

/** The smoke spec as variant `variant`, its layers with a depth policy if given. */
const specFile = (variant: string, policy?: Record<string, unknown>): string => {
  const spec = JSON.parse(readFileSync(join(root, "test/cli/fixtures/smoke-spec.json"), "utf8"))
  const path = join(tmp(), "spec.json")
  writeFileSync(path, JSON.stringify({ ...spec, variant, model: { ...spec.model, layers: { ...spec.model.layers, ...(policy ? { policy } : {}) } } }))
  return path
}

/** `npm run eval` of a run directory: its bpb, MFLOP and blocks per token. */
const evaluated = async (dir: string) => {
  const r = await runInProcess(evalCommand, [dir, "--tokens", tokens])
  expect(r.code, r.stderr).toBe(0)
  const j = JSON.parse(r.stdout) as { valBpb: number; flopsPerToken: { spent: number }; blocksPerToken: number }
  return { bpb: j.valBpb, mflop: j.flopsPerToken.spent / 1e6, blocks: j.blocksPerToken }
}

/** A run derived by `npm run derive`, evaluated. */
const derivedThenEvaluated = async (dir: string, flags: string[]) => {
  const out = join(tmp(), "derived")
  const r = await runInProcess(deriveCommand, [dir, "--out", out, ...flags])
  expect(r.code, r.stderr).toBe(0)
  return evaluated(out)
}

/** The cells of the report's table row that starts with `variant | label`. */
const row = (report: string, variant: string, label: string): string[] => {
  const line = report.split("\n").find((l) => l.startsWith(`| ${variant} | ${label} |`))
  if (line === undefined) throw new Error(`no row "${variant} | ${label}" in:\n${report}`)
  return line.split("|").slice(3, -1).map((c) => c.trim())
}

describe("npm run depth", { timeout: 600_000 }, () => {
  const plain = join(runs, "plain", "seed1")
  const exits = join(runs, "exits", "seed1")
  let report = ""

  beforeAll(async () => {
    const train = (variant: string, out: string, policy?: Record<string, unknown>) =>
      command("src/cli/exp.ts", [specFile(variant, policy), "--steps", "12", "--out", out]).done
    const done = await Promise.all([train("plain", plain), train("exits", exits, { op: "policy", kind: "early-exit", measure: "softmax", threshold: 0.9, heads: "shared" })])
    for (const d of done) expect(d.code, d.stderr).toBe(0)
    const r = await runInProcess(depthCommand, [runs, "--thresholds", "1,0", "--tokens", tokens, "--generate", "8"])
    expect(r.code, r.stderr).toBe(0)
    report = r.stdout
  }, 600_000)

  it("reports each run, and every other block of it, as npm run eval and npm run derive measure them", async () => {
    const [seeds, all, half, allFlops, halfFlops] = row(report, "plain", "2 → 1")
    expect(seeds).toBe("1")
    const full = await evaluated(plain)
    const cut = await derivedThenEvaluated(plain, ["--keep-blocks", "every-other"])
    expect(Number(all)).toBeCloseTo(full.bpb, 4)
    expect(Number(half)).toBeCloseTo(cut.bpb, 4)
    expect(Number(allFlops)).toBeCloseTo(full.mflop, 3)
    expect(Number(halfFlops)).toBeCloseTo(cut.mflop, 3)
    expect(cut.mflop).toBeLessThan(full.mflop)
    // The plain run has no exits: one row of its own, all blocks for every token.
    const [, bpb, blocks, , , genBlocks] = row(report, "plain", "none")
    expect(Number(bpb)).toBeCloseTo(full.bpb, 4)
    expect([blocks, genBlocks]).toEqual(["2.00", "2.00"])
  })

  it("reports early exits at each threshold as the derived run at that threshold measures: 1 never exits, 0 always after the first block", async () => {
    for (const [threshold, expectedBlocks] of [["1", "2.00"], ["0", "1.00"]] as const) {
      const [seeds, bpb, blocks, mflop, tokensPerSecond, genBlocks] = row(report, "exits", `softmax>${threshold}`)
      const reference = await derivedThenEvaluated(exits, ["--threshold", threshold])
      expect(seeds).toBe("1")
      expect(Number(bpb)).toBeCloseTo(reference.bpb, 4)
      expect(Number(mflop)).toBeCloseTo(reference.mflop, 3)
      expect(blocks).toBe(expectedBlocks)
      expect(reference.blocks).toBeCloseTo(Number(expectedBlocks), 2)
      expect(genBlocks).toBe(expectedBlocks)
      expect(Number(tokensPerSecond)).toBeGreaterThan(0)
    }
    // Only plain and LayerDrop runs are cut to every other block.
    expect(report).not.toMatch(/^\| exits \| 2 → 1 \|/m)
  })

  it("refuses a threshold a run's measure cannot reach before evaluating anything", async () => {
    const r = await runInProcess(depthCommand, [runs, "--thresholds", "0.5,-0.5", "--tokens", tokens])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain(`${exits}: at ["layers","policy","threshold"]: the softmax measure lies in [0, 1]`)
    expect(r.stderr).not.toContain("[1/2]")
    expect(r.stdout).toBe("")
  })

  it.each([
    ["a directory that does not exist", () => join(runs, "none"), "no such directory"],
    ["a directory without runs", () => tmp(), "no run directories (with a spec.json) under it"],
  ])("refuses %s with one message", async (_name, target, message) => {
    const dir = target()
    const r = await runInProcess(depthCommand, [dir])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain(`${dir}: ${message}`)
  })
})
