import * as tf from "@tensorflow/tfjs"
import { NodeServices } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { execFileSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type DecoderSpec, llama } from "../../dsl/index.js"
import { buildPeer, compilerAvailable, defaultPeer, runDriver } from "../../bench/llama2c.js"
import { sharedDataDir } from "../../src/data/paths.js"
import { generate } from "../../src/eval/generate.js"
import { exportRun } from "../../src/export/export-run.js"
import { llama2cIds, toLlama2c } from "../../src/export/llama2c.js"
import type { Weights } from "../../src/export/weights.js"
import { importLlama2c } from "../../src/import/import-run.js"
import { fromLlama2c } from "../../src/import/llama2c.js"
import { compile } from "../../src/model/index.js"
import { Rng } from "../../src/random/rng.js"
import { openRun } from "../../src/orchestration/run-dir.js"
import { loadRunData, runTokenizer, tokenRunData } from "../../src/orchestration/data.js"
import { ProgressSink } from "../../src/io/progress.js"
import { prepareSources } from "../../src/train/sources.js"
import type { RunSpec } from "../../src/experiment/define.js"
import { distill } from "../../src/experiment/objective/spec.js"
import { runAt } from "../../src/experiment/run-ref.js"
import { adamw, constant, experiment, magnitude, prune } from "../../src/index.js"
import { expandRuns, type Loaded } from "../../src/experiment/load.js"
import { checkSources } from "../../src/prune/source.js"
import { fileOf, fixtureTokenizer, maxAbsDiff, projectLogits, randomWeights, tensorsOf } from "../export/fixtures.js"
import { readTokenizer } from "../../src/tokenizer/registry.js"
import { llamaLikeVocab, llamaTokenizerJSON, type RuncModel, seededModel, writeV0, writeV1, writeV2 } from "./fixtures.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const bpe = fixtureTokenizer()
const vocab = bpe.vocabSize
const shape = { vocab, width: 48, context: 64, layers: 2, heads: 4 } as const

const imported = (bytes: Uint8Array) => {
  const result = fromLlama2c(bytes)
  if (!result.ok) throw new Error(result.problems.join("\n"))
  return result
}

const logitsOf = (spec: DecoderSpec, weights: Weights, ids: readonly number[]) => {
  const params = tensorsOf(spec, weights)
  const logits = projectLogits(compile(spec), params, ids)
  tf.dispose(Object.values(params))
  return logits
}

const greedy = (spec: DecoderSpec, weights: Weights, prompt: readonly number[], tokens: number) => {
  const params = tensorsOf(spec, weights)
  const out = generate(compile(spec), params, [...prompt], { tokens, temperature: 0 }, Rng.fromSeed(1))
  tf.dispose(Object.values(params))
  return out
}

const small = { dim: 32, hidden: 88, layers: 2, heads: 4, vocab: 300, seqLen: 48 }

describe("llama2.c import", () => {
  for (const tied of [false, true]) {
    it(`a lab llama run exported to llama2.c imports to the same logits and greedy story (${tied ? "shared" : "separate"} classifier)`, () => {
      const spec = llama({ ...shape, tied })
      const weights = randomWeights(spec, 21)
      const exported = toLlama2c(spec, weights, bpe)
      if (!exported.ok) throw new Error(exported.problems.join("\n"))
      const back = imported(fileOf(exported.files, "model.bin"))
      expect(back.dequantised).toBe(false)
      expect(back.spec.tied).toBe(tied)
      const map = llama2cIds(bpe)
      const ours = [bpe.eotId, 72, 300, 5, 677, 412, 33, 33, 90, 140, 600, 257, 258]
      const theirs = logitsOf(back.spec, back.weights, ours.map((id) => map[id]!))
      // The imported model's logit for our token v sits at run.c's id map[v].
      expect(maxAbsDiff(theirs.map((row) => Array.from(map, (to) => row[to]!)), logitsOf(spec, weights, ours))).toBeLessThan(1e-5)
      const unmap = new Map(Array.from(map, (to, from) => [to, from]))
      const prompt = [bpe.eotId, ...bpe.encode("Once upon a time")]
      expect(greedy(back.spec, back.weights, prompt.map((id) => map[id]!), 30).map((id) => unmap.get(id))).toEqual(greedy(spec, weights, prompt, 30))
    })
  }

  it("reads versions 0, 1 and 2 of one model: 0 and 1 exactly, 2 within its int8 quantisation", () => {
    const m = seededModel({ ...small, shared: false }, 3)
    const v0 = imported(writeV0(m))
    const v1 = imported(writeV1(m))
    const { bytes, dequantised } = writeV2(m, 8)
    const v2 = imported(bytes)
    expect(v1.spec).toEqual(v0.spec)
    for (const name of Object.keys(v0.weights)) expect(Array.from(v1.weights[name]!), name).toEqual(Array.from(v0.weights[name]!))
    expect(v2.dequantised).toBe(true)
    expect(v2.header.groupSize).toBe(8)
    // Exactly the dequantised model, and each weight within half a quantisation step of the original.
    const reference = imported(writeV0(dequantised))
    let worst = 0
    for (const name of Object.keys(v0.weights)) {
      expect(Array.from(v2.weights[name]!), name).toEqual(Array.from(reference.weights[name]!))
      v2.weights[name]!.forEach((w, i) => (worst = Math.max(worst, Math.abs(w - v0.weights[name]![i]!))))
    }
    expect(worst).toBeGreaterThan(0)
    expect(worst).toBeLessThan(0.5 * (2.5 / 127))
  })

  it("refuses a model the lab cannot express, naming the header field", () => {
    const gqa = fromLlama2c(writeV0(seededModel({ ...small, shared: true, kvHeads: 2 }, 1)))
    expect(gqa.ok).toBe(false)
    if (!gqa.ok) expect(gqa.problems.join("\n")).toMatch(/header field n_kv_heads: 2 ≠ n_heads 4/)
    const odd = fromLlama2c(writeV1(seededModel({ ...small, dim: 36, heads: 12, shared: true }, 1)))
    expect(odd.ok).toBe(false)
    if (!odd.ok) expect(odd.problems.join("\n")).toMatch(/header field n_heads: head size 3 is odd/)
  })

  it("refuses a file cut short, with the size its header implies", () => {
    const bytes = writeV1(seededModel({ ...small, shared: true }, 1))
    const cut = fromLlama2c(bytes.subarray(0, bytes.length - 4))
    expect(cut.ok).toBe(false)
    if (!cut.ok) expect(cut.problems.join("\n")).toMatch(new RegExp(`${bytes.length - 4} bytes; the header's shape \\(dim 32, .*\\) makes a version 1 file of ${bytes.length}`))
  })

  describe("as a run directory", () => {
    let dir = ""
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), "import-run-"))
    })
    afterAll(() => rmSync(dir, { recursive: true, force: true }))
    const run = <A, E>(effect: Effect.Effect<A, E, never>) => Effect.runPromise(effect)

    it("is a finished run that openRun reads (spec, SentencePiece tokenizer, weights) and a student takes as teacher and a pruning run as source, with its provenance; it is never overwritten", async () => {
      const sp = llamaLikeVocab(bpe, new Set())
      const model = seededModel({ ...small, vocab: sp.vocabSize, shared: true }, 5)
      writeFileSync(join(dir, "model.bin"), writeV2(model, 16).bytes)
      writeFileSync(join(dir, "tokenizer.bin"), sp.toBin())
      const out = join(dir, "runs", "imports", "mini")
      const result = await run(importLlama2c(join(dir, "model.bin"), join(dir, "tokenizer.bin"), { out }).pipe(Effect.provide(NodeServices.layer)))
      expect(result.summary["imported"]).toMatchObject({ format: "llama2.c model.bin", version: 2, dequantised: true, groupSize: 16 })
      expect((result.summary["imported"] as { sha256: string }).sha256).toMatch(/^[0-9a-f]{64}$/)
      const opened = await run(
        Effect.scoped(
          Effect.gen(function* () {
            const open = yield* openRun(out)
            return { kind: open.tokenizer.kind, vocab: open.tokenizer.vocabSize, modelVocab: open.run.model.vocab, step: open.step, names: Object.keys(open.params).length }
          }),
        ).pipe(Effect.provide(NodeServices.layer)),
      )
      expect(opened).toEqual({ kind: "sentencepiece", vocab: sp.vocabSize, modelVocab: sp.vocabSize, step: 0, names: 1 + 1 + 2 * 9 })
      // A student on the imported run's data (its tokenizer) takes it as its distillation teacher.
      const student: RunSpec = { ...result.run, experiment: "student", model: llama({ vocab: sp.vocabSize, width: 16, context: 48, layers: 1, heads: 2 }), objective: distill({ teacher: runAt(out), temperature: 2, alpha: 0.5 }) }
      const data = tokenRunData(runTokenizer(sp, undefined), Uint16Array.of(1, 300, 301), Uint16Array.of(1, 300), { train: 3, valid: 3 }, "test")
      const sources = await run(prepareSources(student, data).pipe(Effect.provide(NodeServices.layer)))
      expect(sources.objective.map((s) => s.dir)).toEqual([out])
      // A pruning experiment on the same data takes it as its source ("imports/<name>" in the runs folder) and starts from its model.
      const pruning: Loaded = {
        name: "pruned",
        source: "experiments/pruned.ts",
        experiment: experiment({
          description: "",
          models: { m: prune({ source: "imports/mini", method: magnitude({ sparsity: 0.5 }) }) },
          data: result.run.training.data,
          budget: { steps: 0 },
          optimizer: adamw({ lr: constant(1e-3) }),
        }),
      }
      const [pruned] = await run(expandRuns(pruning, { runs: join(dir, "runs") }).pipe(Effect.provide(NodeServices.layer)))
      expect(pruned!.model).toEqual(result.run.model)
      expect(pruned!.prune!.source.dir).toBe(out)
      await run(checkSources([pruned!]).pipe(Effect.provide(NodeServices.layer)))
      const again = await Effect.runPromiseExit(importLlama2c(join(dir, "model.bin"), join(dir, "tokenizer.bin"), { out }).pipe(Effect.provide(NodeServices.layer)))
      expect(JSON.stringify(again)).toMatch(/is not empty; an import never overwrites a run/)
    })

    it("exports back to llama2.c with the tokenizer.bin as read and weights that import to the same model", async () => {
      const sp = llamaLikeVocab(bpe, new Set())
      const model = seededModel({ ...small, vocab: sp.vocabSize, shared: false }, 6)
      writeFileSync(join(dir, "round.bin"), writeV1(model))
      writeFileSync(join(dir, "tokenizer.bin"), sp.toBin())
      const out = join(dir, "runs", "round")
      await run(importLlama2c(join(dir, "round.bin"), join(dir, "tokenizer.bin"), { out }).pipe(Effect.provide(NodeServices.layer)))
      const exported = await run(Effect.scoped(exportRun(out, "llama2c")).pipe(Effect.provide(NodeServices.layer)))
      expect(readFileSync(join(exported.out, "tokenizer.bin"))).toEqual(Buffer.from(sp.toBin()))
      const again = imported(readFileSync(join(exported.out, "model.bin")))
      const first = imported(writeV0(model))
      for (const name of Object.keys(first.weights)) expect(Array.from(again.weights[name]!), name).toEqual(Array.from(first.weights[name]!))
    })

    it("data naming a run without a tokenizer.json fails at once, naming the field and the file", async () => {
      const exit = await Effect.runPromiseExit(loadRunData({ source: "tinystories", tokenizer: { run: join(dir, "nothing") }, extra: false }).pipe(Effect.provide(Layer.merge(NodeServices.layer, ProgressSink.stderr))))
      expect(JSON.stringify(exit)).toContain(`training.data.tokenizer.run: ${join(dir, "nothing", "tokenizer.json")}: cannot read it`)
    })

    it("refuses a tokenizer.bin of another vocabulary before writing anything", async () => {
      const sp = llamaLikeVocab(bpe, new Set())
      writeFileSync(join(dir, "other.bin"), writeV1(seededModel({ ...small, vocab: sp.vocabSize + 1, shared: true }, 5)))
      writeFileSync(join(dir, "tokenizer.bin"), sp.toBin())
      const out = join(dir, "runs", "other")
      const exit = await Effect.runPromiseExit(importLlama2c(join(dir, "other.bin"), join(dir, "tokenizer.bin"), { out }).pipe(Effect.provide(NodeServices.layer)))
      expect(JSON.stringify(exit)).toMatch(/tokenizer.bin: not the tokenizer.bin of this model: ends at byte \d+, within piece \d+; the model's vocab_size is \d+/)
      expect(() => readFileSync(join(out, "spec.json"))).toThrow()
    })
  })
})

/** The first `n` stories of the validation split, each cut to its first 240 characters (run.c's merge loop is quadratic). */
const stories = (n: number): string[] =>
  readFileSync(join(sharedDataDir(), "valid.txt"), "utf8")
    .split("<|endoftext|>")
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .slice(0, n)
    .map((s) => s.slice(0, 240))

const awkward = [
  "",
  " ",
  "  leading spaces",
  "trailing space ",
  "Once upon a time",
  "quiz: zebra, box, jazz",
  "café naïve résumé",
  "日本語のテキスト",
  "emoji 🙂👍🏽 and ✓",
  "tab\tnew\nline\r\n",
  "control \u0001\u001f bytes",
  "a\u0000b",
  "<s> and </s> and <0x41>",
  "\uffff\u0080\u07ff\u0800",
]

/**
 * run.c itself, built from the peer directory, as the reference: its encode() on the lab's
 * texts, and its forward() and argmax on the same ids. Skipped only where there is no C compiler.
 */
describe.skipIf(!compilerAvailable())("run.c as the reference for imported llama2.c files", () => {
  let dir = ""
  let encoder = ""
  let peer: ReturnType<typeof buildPeer> | undefined
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "llama2c-import-"))
    encoder = join(dir, "llama2c-encode")
    execFileSync(process.env["CC"] ?? "gcc", ["-O2", `-I${defaultPeer}`, join(import.meta.dirname, "llama2c-encode.c"), "-lm", "-o", encoder], { stdio: ["ignore", "ignore", "inherit"] })
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))
  // "q", "x" and "z" are missing from the vocabulary, so they take the byte fallback like non-ASCII characters.
  const sp = llamaLikeVocab(bpe, new Set(["q", "x", "z"]))

  const texts = [...awkward, ...stories(300)]
  /** run.c's encode of `texts` with sp's tokenizer.bin. */
  const runcEncoding = (): number[][] => {
    const file = join(dir, "tokenizer.bin")
    writeFileSync(file, sp.toBin())
    const input = Buffer.concat(
      texts.flatMap((t) => {
        const bytes = Buffer.from(t, "utf8")
        const length = Buffer.alloc(4)
        length.writeUInt32LE(bytes.length)
        return [length, bytes]
      }),
    )
    const lines = execFileSync(encoder, [file, String(sp.vocabSize)], { input, encoding: "utf8", maxBuffer: 1 << 26 }).split("\n")
    return texts.map((_, i) => (lines[i] === "" ? [] : lines[i]!.split(" ").map(Number)))
  }

  it("the lab's encoding of stories and awkward strings equals run.c's encode", () => {
    const theirs = runcEncoding()
    const ours = texts.map((t) => Array.from(sp.encode(t)))
    // The vocabulary really is exercised: merges, the byte fallback and the dummy prefix.
    expect(ours.flat().some((id) => id >= 3 && id < 259)).toBe(true)
    expect(ours[4]!.length).toBeLessThan("Once upon a time".length)
    texts.forEach((t, i) => expect(ours[i], JSON.stringify(t.slice(0, 60))).toEqual(theirs[i]))
    // Decoding gives the text back: the dummy prefix is dropped after BOS, whose piece is "<s>".
    for (const t of texts.slice(20, 40)) expect(sp.decode([1, ...sp.encode(t)])).toBe(`<s>${t}`)
  })

  for (const spaces of ["normalizer", "metaspace"] as const) {
    it(`a Hugging Face Llama tokenizer.json of the same vocabulary (${spaces}) encodes stories and awkward strings as run.c's encode`, () => {
      const theirs = runcEncoding()
      const fromJson = readTokenizer(JSON.stringify(llamaTokenizerJSON(sp, spaces)))
      expect(fromJson.kind).toBe("sentencepiece")
      expect(fromJson.vocabSize).toBe(sp.vocabSize)
      texts.forEach((t, i) => expect(Array.from(fromJson.encode(t)), JSON.stringify(t.slice(0, 60))).toEqual(theirs[i]))
      for (const t of texts.slice(20, 40)) expect(fromJson.decode([1, ...fromJson.encode(t)])).toBe(`<s>${t}`)
    })
  }

  it("greedy tokens of the imported model equal run.c's from the same ids (versions 0, 1, and 2 against run.c on its dequantised weights)", () => {
    peer ??= buildPeer(defaultPeer, dir)
    const m: RuncModel = seededModel({ ...small, vocab: sp.vocabSize, shared: false }, 9)
    const prompt = [1, ...sp.encode("Once upon a time, there was a")]
    const runc = (model: RuncModel, name: string) => {
      const file = join(dir, `${name}.bin`)
      writeFileSync(file, writeV0(model))
      return runDriver(peer!, file, prompt, 12, 1).tokens
    }
    const reference = runc(m, "v0")
    for (const bytes of [writeV0(m), writeV1(m)]) {
      const back = imported(bytes)
      expect(greedy(back.spec, back.weights, prompt, 12)).toEqual(reference)
    }
    const { bytes, dequantised } = writeV2(m, 32)
    const v2 = imported(bytes)
    expect(greedy(v2.spec, v2.weights, prompt, 12)).toEqual(runc(dequantised, "v2-dequantised"))
  })
})
