import * as tf from "@tensorflow/tfjs"
import { NodeServices } from "@effect/platform-node"
import { Effect } from "effect"
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type DecoderSpec, gpt2, llama } from "../../dsl/index.js"
import { generate } from "../../src/eval/generate.js"
import { toHuggingFace } from "../../src/export/hf.js"
import type { Weights } from "../../src/export/weights.js"
import { fromHuggingFace } from "../../src/import/hf.js"
import { importHuggingFace, importLlama2c } from "../../src/import/import-run.js"
import { exportRun } from "../../src/export/export-run.js"
import { compile } from "../../src/model/index.js"
import { Rng } from "../../src/random/rng.js"
import { openRun } from "../../src/orchestration/run-dir.js"
import { decodeSafetensors } from "../../src/train/safetensors.js"
import { fileOf, fixtureTokenizer, jsonOf, maxAbsDiff, projectLogits, randomWeights, safetensorsLookup, tensorsOf } from "../export/fixtures.js"
import { type Config, gpt2Logits, llamaLogits } from "../export/reference.js"
import { SentencePieceTokenizer } from "../../src/tokenizer/sentencepiece.js"
import { llamaLikeVocab, llamaTokenizerJSON, seededModel, writeV1 } from "./fixtures.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const tokenizer = fixtureTokenizer()
const base = { vocab: tokenizer.vocabSize, width: 48, context: 64, layers: 2, heads: 4 } as const
const ids = [tokenizer.eotId, 72, 300, 5, 677, 412, 33, 33, 90, 140, 600, 257, 258]

const exported = (spec: DecoderSpec, seed: number) => {
  const weights = randomWeights(spec, seed)
  const result = toHuggingFace(spec, weights, tokenizer)
  if (!result.ok) throw new Error(result.problems.join("\n"))
  return { weights, files: result.files }
}

const tensorsIn = (bytes: Uint8Array) =>
  Object.fromEntries(Object.entries(Effect.runSync(decodeSafetensors(bytes, "model.safetensors")).tensors).map(([n, t]) => [n, { shape: t.shape, data: t.data as Float32Array }]))

const logitsOf = (spec: DecoderSpec, weights: Weights, tokens: readonly number[]) => {
  const params = tensorsOf(spec, weights)
  const out = projectLogits(compile(spec), params, tokens)
  tf.dispose(Object.values(params))
  return out
}

const greedy = (spec: DecoderSpec, weights: Weights) => {
  const params = tensorsOf(spec, weights)
  const out = generate(compile(spec), params, ids.slice(0, 4), { tokens: 20, temperature: 0 }, Rng.fromSeed(1))
  tf.dispose(Object.values(params))
  return out
}

describe("Hugging Face import", () => {
  const cases: Array<[string, DecoderSpec, typeof gpt2Logits]> = [
    ["GPT2LMHeadModel (tied, gelu-tanh)", gpt2(base), gpt2Logits],
    ["GPT2LMHeadModel (separate head, relu)", gpt2({ ...base, activation: "relu", tied: false }), gpt2Logits],
    ["LlamaForCausalLM (separate head)", llama(base), llamaLogits],
    ["LlamaForCausalLM (tied)", llama({ ...base, tied: true }), llamaLogits],
  ]
  for (const [name, spec, reference] of cases) {
    it(`${name}: the float64 reference on the directory's tensors computes the imported model's logits, and the round trip keeps them and the greedy story`, () => {
      const { weights, files } = exported(spec, 31)
      const config = jsonOf(files, "config.json")
      const back = fromHuggingFace(config, tensorsIn(fileOf(files, "model.safetensors")))
      if (!back.ok) throw new Error(back.problems.join("\n"))
      const ours = logitsOf(back.spec, back.weights, ids)
      expect(maxAbsDiff(reference(config as Config, safetensorsLookup(fileOf(files, "model.safetensors")).lookup, ids), ours)).toBeLessThan(1e-4)
      expect(maxAbsDiff(logitsOf(spec, weights, ids), ours)).toBeLessThan(1e-5)
      expect(greedy(back.spec, back.weights)).toEqual(greedy(spec, weights))
    })
  }

  it("refuses what the lab cannot express, naming the config.json field", () => {
    const { files } = exported(llama(base), 1)
    const config = jsonOf(files, "config.json")
    const tensors = tensorsIn(fileOf(files, "model.safetensors"))
    const refused = (patch: Record<string, unknown>) => {
      const r = fromHuggingFace({ ...config, ...patch }, tensors)
      return r.ok ? "" : r.problems.join("\n")
    }
    expect(refused({ num_key_value_heads: 2 })).toMatch(/config.json field num_key_value_heads: 2; ≠ num_attention_heads 4/)
    expect(refused({ rope_scaling: { type: "linear", factor: 2 } })).toMatch(/config.json field rope_scaling: .*not scaled/)
    expect(refused({ hidden_act: "tanh" })).toMatch(/config.json field hidden_act: "tanh"/)
    expect(refused({ architectures: ["MistralForCausalLM"] })).toMatch(/config.json field architectures: \["MistralForCausalLM"\]; the lab imports/)
    expect(refused({ intermediate_size: 100 })).toMatch(/model.safetensors: model.layers.0.mlp.gate_proj.weight has shape \[128,48\]; the config makes it \[100,48\]/)
  })

  describe("as a run directory", () => {
    let dir = ""
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), "import-hf-"))
    })
    afterAll(() => rmSync(dir, { recursive: true, force: true }))

    it("keeps the directory's byte-level BPE tokenizer and records the provenance", async () => {
      const { files } = exported(gpt2(base), 4)
      const hf = join(dir, "tiny-gpt2")
      mkdirSync(hf)
      for (const f of files) writeFileSync(join(hf, f.name), f.data)
      const out = join(dir, "runs", "tiny-gpt2")
      const result = await Effect.runPromise(importHuggingFace(hf, { out }).pipe(Effect.provide(NodeServices.layer)))
      expect(result.summary.imported).toMatchObject({ format: "Hugging Face GPT2LMHeadModel", dequantised: false })
      const opened = await Effect.runPromise(
        Effect.scoped(Effect.map(openRun(out), (o) => ({ kind: o.tokenizer.kind, hash: o.tokenizer.hash, posenc: o.run.model.posenc.kind }))).pipe(Effect.provide(NodeServices.layer)),
      )
      expect(opened).toEqual({ kind: "bpe", hash: tokenizer.hash, posenc: "learned" })
    })

    // A Llama vocabulary of the model's size: the first pieces of a Llama-like one, as transformers writes its tokenizer.json.
    const full = llamaLikeVocab(tokenizer, new Set())
    const sp = new SentencePieceTokenizer({ pieces: full.pieces.slice(0, base.vocab), scores: full.scores.slice(0, base.vocab), maxTokenLength: full.maxTokenLength })
    const llamaDir = (name: string, tokenizerJson: Record<string, unknown>) => {
      const { files } = exported(llama(base), 5)
      const hf = join(dir, name)
      mkdirSync(hf)
      for (const f of files) writeFileSync(join(hf, f.name), f.data)
      writeFileSync(join(hf, "tokenizer.json"), JSON.stringify(tokenizerJson))
      return hf
    }

    it("reads a LlamaForCausalLM directory's Llama tokenizer.json as the SentencePiece kind, encoding as its tokenizer.bin would", async () => {
      const hf = llamaDir("tiny-llama", llamaTokenizerJSON(sp, "metaspace"))
      const out = join(dir, "runs", "tiny-llama")
      await Effect.runPromise(importHuggingFace(hf, { out }).pipe(Effect.provide(NodeServices.layer)))
      const text = "Once upon a time, a cat sat. Café!"
      const opened = await Effect.runPromise(
        Effect.scoped(Effect.map(openRun(out), (o) => ({ kind: o.tokenizer.kind, vocab: o.tokenizer.vocabSize, ids: Array.from(o.tokenizer.encode(text)) }))).pipe(Effect.provide(NodeServices.layer)),
      )
      expect(opened).toEqual({ kind: "sentencepiece", vocab: base.vocab, ids: Array.from(sp.encode(text)) })
    })

    it("a run with a SentencePiece tokenizer (a llama2.c import) exported with --format hf imports again with the same vocabulary, encoding and weights", async () => {
      const full = llamaLikeVocab(tokenizer, new Set(["z"]))
      writeFileSync(join(dir, "sp.bin"), writeV1(seededModel({ dim: 32, hidden: 64, layers: 2, heads: 4, vocab: full.vocabSize, seqLen: 32, shared: false }, 8)))
      writeFileSync(join(dir, "sp-tokenizer.bin"), full.toBin())
      const first = join(dir, "runs", "sp-first")
      const layer = NodeServices.layer
      await Effect.runPromise(importLlama2c(join(dir, "sp.bin"), join(dir, "sp-tokenizer.bin"), { out: first }).pipe(Effect.provide(layer)))
      const exportedDir = await Effect.runPromise(Effect.scoped(exportRun(first, "hf")).pipe(Effect.provide(layer)))
      expect(JSON.parse(readFileSync(join(exportedDir.out, "tokenizer_config.json"), "utf8"))).toMatchObject({ bos_token: "<s>", eos_token: "</s>", unk_token: "<unk>" })
      const again = join(dir, "runs", "sp-again")
      await Effect.runPromise(importHuggingFace(exportedDir.out, { out: again }).pipe(Effect.provide(layer)))
      const texts = ["Once upon a time, a lazy zebra sat.", "  two spaces and a tab\t", "café 🙂", ""]
      const opened = await Effect.runPromise(
        Effect.scoped(Effect.map(openRun(again), (o) => ({ kind: o.tokenizer.kind, pieces: (o.tokenizer as SentencePieceTokenizer).pieces.map((p) => Buffer.from(p).toString("hex")), ids: texts.map((t) => Array.from(o.tokenizer.encode(t))) }))).pipe(
          Effect.provide(layer),
        ),
      )
      expect(opened).toEqual({ kind: "sentencepiece", pieces: full.pieces.map((p) => Buffer.from(p).toString("hex")), ids: texts.map((t) => Array.from(full.encode(t))) })
      expect(readFileSync(join(again, "checkpoint", "model.safetensors")).equals(readFileSync(join(first, "checkpoint", "model.safetensors")))).toBe(true)
    })

    it("refuses a tokenizer.json the lab cannot read, naming the file and the field, before writing the run", async () => {
      const json = llamaTokenizerJSON(sp, "normalizer")
      const hf = llamaDir("unigram-llama", { ...json, model: { ...(json["model"] as object), type: "Unigram" } })
      const out = join(dir, "runs", "unigram-llama")
      const exit = await Effect.runPromiseExit(importHuggingFace(hf, { out }).pipe(Effect.provide(NodeServices.layer)))
      expect(JSON.stringify(exit)).toContain(`${join(hf, "tokenizer.json")}: invalid tokenizer.json: model.type: \\"Unigram\\"`)
      expect(existsSync(out)).toBe(false)
    })
  })
})
