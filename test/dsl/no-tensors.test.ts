import { mkdtempSync, mkdirSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { flopsPerToken, hashSpec, paramCounts, printSpec } from "../../dsl/index.js"
import { command } from "../cli/process.js"
import { mixedStack } from "./fixtures/mixed-stack.js"

/**
 * The language is data: importing dsl/ (and tabulating results) must not need the tensor
 * library or the native addon. The commands run in child processes preloaded with a hook
 * that makes @tensorflow/*, *.node and src/backend/ unresolvable.
 */
const blocked = (script: string, args: string[] = []) =>
  command(script, args, { NODE_OPTIONS: `--import ${join(import.meta.dirname, "fixtures/block-tensors.mjs")}` }).done

describe("the DSL without a tensor library", { timeout: 60_000 }, () => {
  it("the blocking hook does block: the interpreter cannot load", async () => {
    const r = await blocked("src/cli/eval.ts", ["--help"])
    expect(r.code).not.toBe(0)
    expect(r.stderr).toMatch(/blocked import: @tensorflow\/tfjs/)
  })

  it("builds, prints, hashes, decodes and counts a heterogeneous stack", async () => {
    const r = await blocked("test/dsl/fixtures/use-dsl.ts")
    expect(r.code, r.stderr).toBe(0)
    const out = JSON.parse(r.stdout)
    // The same figures as in this process, where the tensor library is loaded.
    expect(out).toEqual({ printed: printSpec(mixedStack), hash: hashSpec(mixedStack), decoded: true, counts: paramCounts(mixedStack), flops: flopsPerToken(mixedStack), loaded: [] })
  })

  it("npm run results tabulates finished runs", async () => {
    const dir = mkdtempSync(join(tmpdir(), "results-no-tf-"))
    for (const seed of [1, 2]) {
      mkdirSync(join(dir, `seed${seed}`))
      const summary = { experiment: "x", variant: "base", seed, valLoss: 2 + seed, valBpb: 1 + seed / 10, lengths: {}, tokensPerSecond: 100, tokensTrained: 4096, params: { total: 1000, nonEmbedding: 600, embedding: 400 } }
      writeFileSync(join(dir, `seed${seed}`, "summary.json"), JSON.stringify(summary))
    }
    const r = await blocked("src/cli/results.ts", [dir])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/\| base \| 2 \| 1000 \/ 600 \| 4096 \| 3\.5000 ± 0\.7071 \| 1\.1500 ± 0\.0707 \| 1\.1000, 1\.2000 \| 100 \|/)
  })

  it("npm run results loads a pruning experiment for its variant order", async () => {
    const runs = mkdtempSync(join(tmpdir(), "results-no-tf-"))
    const summary = (variant: string) => ({ experiment: "pruning-smoke", variant, seed: 1, valLoss: 2, valBpb: 1, lengths: {}, tokensPerSecond: 0, tokensTrained: 0, params: { total: 1000, nonEmbedding: 600, embedding: 400 }, pruning: { sparsity: 0.25, sourceTokens: 4096 } })
    for (const variant of ["gradual-75", "magnitude-global-50"]) {
      mkdirSync(join(runs, "pruning-smoke", variant), { recursive: true })
      writeFileSync(join(runs, "pruning-smoke", variant, "summary.json"), JSON.stringify(summary(variant)))
    }
    const r = await command("src/cli/results.ts", ["pruning-smoke"], { NODE_OPTIONS: `--import ${join(import.meta.dirname, "fixtures/block-tensors.mjs")}`, TINYSTORIES_RUNS: runs }).done
    expect(r.code, r.stderr).toBe(0)
    // The experiment file's order (magnitude-global-50 before gradual-75), not the alphabet's.
    expect(r.stdout).toMatch(/\| magnitude-global-50 \| 1 \| 1000 \/ 600 \| 4096 \+ 0 \| 2\.0000 \| 1\.0000 \| 0\.2500 \| n\/a \|\n\| gradual-75 \|/)
  })
})
