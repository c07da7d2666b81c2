import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as tf from "@tensorflow/tfjs"
import { NodeServices } from "@effect/platform-node"
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { paramTable } from "../../dsl/index.js"
import { generate } from "../../src/eval/generate.js"
import { fromLlama2c } from "../../src/import/llama2c.js"
import { compile } from "../../src/model/index.js"
import { Rng } from "../../src/random/rng.js"
import { unrecordedRuns } from "../../src/train/ledger.js"
import { command as evalCommand } from "../../src/cli/eval.js"
import { command as generateCommand } from "../../src/cli/generate.js"
import { command as importCommand } from "../../src/cli/import.js"
import { runInProcess } from "../cli/in-process.js"
import { fixtureTokenizer } from "../export/fixtures.js"
import { llamaLikeVocab, seededModel, writeV0, writeV2 } from "./fixtures.js"

const sp = llamaLikeVocab(fixtureTokenizer(), new Set())
const small = { dim: 32, hidden: 64, layers: 2, heads: 4, vocab: sp.vocabSize, seqLen: 32 }

describe("npm run import", () => {
  let dir = ""
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "import-cli-"))
    writeFileSync(join(dir, "tokenizer.bin"), sp.toBin())
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it("without --tokenizer is a usage error (exit 2)", async () => {
    writeFileSync(join(dir, "m.bin"), writeV0(seededModel({ ...small, shared: true }, 1)))
    const r = await runInProcess(importCommand, [join(dir, "m.bin")])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/tokenizer/)
  })

  it("refuses --tokenizer with a Hugging Face directory, which has its tokenizer.json (exit 2)", async () => {
    const r = await runInProcess(importCommand, [dir, "--tokenizer", join(dir, "tokenizer.bin")])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain("--tokenizer is for a llama2.c model.bin")
  })

  it("puts the run in runs/imports/<name> by default, its data naming its own tokenizer there", async () => {
    const runs = mkdtempSync(join(tmpdir(), "import-runs-"))
    const saved = process.env["TINYSTORIES_RUNS"]
    process.env["TINYSTORIES_RUNS"] = runs
    try {
      writeFileSync(join(dir, "stories-mini.bin"), writeV0(seededModel({ ...small, shared: true }, 3)))
      const r = await runInProcess(importCommand, [join(dir, "stories-mini.bin"), "--tokenizer", join(dir, "tokenizer.bin")])
      expect(r.code, r.stderr).toBe(0)
      const spec = JSON.parse(readFileSync(join(runs, "imports", "stories-mini", "spec.json"), "utf8"))
      expect(spec.training.data.tokenizer).toEqual({ run: "imports/stories-mini" })
      expect(spec.training.budget).toEqual({ steps: 0 })
      // Trained elsewhere, it is no finished run missing from the ledger.
      expect(await Effect.runPromise(unrecordedRuns(runs, []).pipe(Effect.provide(NodeServices.layer)))).toEqual([])
    } finally {
      if (saved === undefined) delete process.env["TINYSTORIES_RUNS"]
      else process.env["TINYSTORIES_RUNS"] = saved
      rmSync(runs, { recursive: true, force: true })
    }
  })

  it("refuses grouped-query attention with the header field (exit 1), writing nothing", async () => {
    writeFileSync(join(dir, "gqa.bin"), writeV0(seededModel({ ...small, shared: true, kvHeads: 2 }, 1)))
    const out = join(dir, "gqa-run")
    const r = await runInProcess(importCommand, [join(dir, "gqa.bin"), "--tokenizer", join(dir, "tokenizer.bin"), "--out", out])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain("header field n_kv_heads: 2 ≠ n_heads 4")
    expect(() => readFileSync(join(out, "spec.json"))).toThrow()
  })

  it("makes a run that npm run eval measures in bits per byte and npm run generate samples, saying a version 2 file was dequantised", async () => {
    writeFileSync(join(dir, "q8.bin"), writeV2(seededModel({ ...small, shared: false }, 2), 16).bytes)
    const out = join(dir, "q8")
    const r = await runInProcess(importCommand, [join(dir, "q8.bin"), "--tokenizer", join(dir, "tokenizer.bin"), "--out", out])
    expect(r.code).toBe(0)
    expect(r.stderr).toContain("dequantised to float32")
    expect(JSON.parse(r.stdout)).toMatchObject({ steps: 0, imported: { version: 2, dequantised: true, groupSize: 16 } })
    const stories = join(dir, "stories.txt")
    writeFileSync(stories, "Once upon a time, a cat sat.\n<|endoftext|>\nThe dog ran to the park. Café!\n<|endoftext|>\n")
    const evaluated = await runInProcess(evalCommand, [out, "--data", stories, "--tokens", "16"])
    expect(evaluated.code).toBe(0)
    const figures = JSON.parse(evaluated.stdout) as { valBpb: number; bytesPerToken: number }
    expect(figures.valBpb).toBeGreaterThan(0)
    expect(figures.bytesPerToken).toBeGreaterThan(1)
    const sampled = await runInProcess(generateCommand, [out, "--prompt", "Once upon", "--tokens", "5", "--temperature", "0"])
    expect(sampled.code).toBe(0)
    // As run.c does, the prompt follows BOS.
    const back = fromLlama2c(readFileSync(join(dir, "q8.bin")))
    if (!back.ok) throw new Error(back.problems.join("\n"))
    const params = Object.fromEntries(paramTable(back.spec).map((p) => [p.name, tf.tensor(back.weights[p.name]!, [...p.decl.shape])]))
    const ids = generate(compile(back.spec), params, [1, ...sp.encode("Once upon")], { tokens: 5, temperature: 0, stop: 1 }, Rng.fromSeed(1))
    tf.dispose(Object.values(params))
    expect(sampled.stdout).toBe(`Once upon${sp.decode(ids.filter((id) => id !== 1))}`)
  })
})
