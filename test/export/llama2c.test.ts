import * as tf from "@tensorflow/tfjs"
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { attention, block, decoder, type DecoderSpec, depth, ffn, llama, norm, posenc, stack, validateSpec } from "../../dsl/index.js"
import { buildPeer, compilerAvailable, defaultPeer, runDriver, runStock } from "../../bench/llama2c.js"
import { generate } from "../../src/eval/generate.js"
import { llama2cIds, toLlama2c } from "../../src/export/llama2c.js"
import { compile } from "../../src/model/index.js"
import { Rng } from "../../src/random/rng.js"
import { fileOf, fixtureTokenizer, maxAbsDiff, projectLogits, randomWeights, readModelBin, tensorsOf } from "./fixtures.js"
import { llamaLogits } from "./reference.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const tokenizer = fixtureTokenizer()
const vocab = tokenizer.vocabSize
const shape = { vocab, width: 48, context: 64, layers: 2, heads: 4 } as const

const exportOf = (spec: DecoderSpec, seed: number) => {
  const weights = randomWeights(spec, seed)
  const result = toLlama2c(spec, weights, tokenizer)
  if (!result.ok) throw new Error(result.problems.join("\n"))
  return { weights, files: result.files }
}

/** tokenizer.bin as run.c's build_tokenizer reads it, pieces decoded as its decode() does. */
const readTokenizerBin = (bytes: Uint8Array, n: number) => {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const maxLength = view.getInt32(0, true)
  let at = 4
  const pieces: Uint8Array[] = []
  const scores: number[] = []
  for (let i = 0; i < n; i++) {
    scores.push(view.getFloat32(at, true))
    const len = view.getInt32(at + 4, true)
    const raw = bytes.slice(at + 8, at + 8 + len)
    const byte = /^<0x([0-9A-F]{2})>$/.exec(new TextDecoder().decode(raw))
    pieces.push(byte ? Uint8Array.of(parseInt(byte[1]!, 16)) : raw)
    at += 8 + len
  }
  return { maxLength, pieces, scores, consumed: at === bytes.length }
}

describe("llama2c export", () => {
  it("maps <|endoftext|> to run.c's BOS (1) and byte b to its byte fallback (3 + b), one to one", () => {
    const ids = llama2cIds(tokenizer)
    expect(ids[tokenizer.eotId]).toBe(1)
    tokenizer.tokens.forEach((bytes, id) => {
      if (bytes.length === 1 && id !== tokenizer.eotId) expect(ids[id]).toBe(3 + bytes[0]!)
    })
    expect(new Set(ids).size).toBe(vocab)
    expect(Math.min(...ids)).toBe(0)
    expect(Math.max(...ids)).toBe(vocab - 1)
  })

  for (const tied of [false, true]) {
    it(`model.bin (${tied ? "shared" : "separate"} classifier) computes the project's logits with run.c's interleaved rotary pairs`, () => {
      const spec = llama({ ...shape, tied })
      const { weights, files } = exportOf(spec, 5)
      const bin = readModelBin(fileOf(files, "model.bin"))
      expect(bin.consumed).toBe(true)
      expect(bin.kvHeads).toBe(4)
      expect(bin.seqLen).toBe(64)
      const ours = [tokenizer.eotId, 72, 300, 5, 677, 412, 33, 33, 90, 140, 600, 257, 258]
      const map = llama2cIds(tokenizer)
      const theirs = llamaLogits(bin.config, bin.lookup, ours.map((id) => map[id]!), "interleaved")
      const params = tensorsOf(spec, weights)
      const logits = projectLogits(compile(spec), params, ours)
      tf.dispose(Object.values(params))
      // run.c's logit for our token v sits at its id map[v].
      expect(maxAbsDiff(theirs.map((row) => Array.from(map, (to) => row[to]!)), logits)).toBeLessThan(1e-5)
    })
  }

  it("tokenizer.bin holds this tokenizer's bytes at run.c's ids, merges scored in rank order", () => {
    const { files } = exportOf(llama(shape), 1)
    const bin = readTokenizerBin(fileOf(files, "tokenizer.bin"), vocab)
    expect(bin.consumed).toBe(true)
    const map = llama2cIds(tokenizer)
    tokenizer.tokens.forEach((bytes, id) => expect(Array.from(bin.pieces[map[id]!]!), `token ${id}`).toEqual(Array.from(bytes)))
    expect(bin.maxLength).toBe(Math.max(...tokenizer.tokens.map((t) => t.length)))
    // An earlier merge scores higher, so run.c's encoder applies it first.
    const [first, second] = tokenizer.merges
    expect(bin.scores[map[first!.id]!]).toBeGreaterThan(bin.scores[map[second!.id]!]!)
  })

  const refused: Array<[string, DecoderSpec, RegExp]> = [
    ["LayerNorm", decoder({ ...shape, posenc: posenc("rope"), layers: depth(2, block({ attention: attention("full", { heads: 4, bias: false }), ffn: ffn("swiglu", { bias: false }) })), norm: norm("layer") }), /norm "layer"; run.c computes RMSNorm only/],
    ["an RMSNorm epsilon of 1e-6", decoder({ ...shape, posenc: posenc("rope"), norm: norm("rms", { eps: 1e-6 }), layers: depth(2, block({ attention: attention("full", { heads: 4, bias: false }), ffn: ffn("swiglu", { bias: false }), norm: norm("rms", { eps: 1e-5 }) })) }), /at \["norm"\]: RMSNorm epsilon 0.000001; run.c hard-codes 0.00001/],
    ["learned positions", decoder({ ...shape, norm: norm("rms", { eps: 1e-5 }), layers: depth(2, block({ attention: attention("full", { heads: 4, bias: false }), ffn: ffn("swiglu", { bias: false }), norm: norm("rms", { eps: 1e-5 }) })) }), /position scheme "learned"/],
    ["a rotary base of 500", decoder({ ...shape, posenc: posenc("rope", { base: 500 }), norm: norm("rms", { eps: 1e-5 }), layers: depth(2, block({ attention: attention("full", { heads: 4, bias: false }), ffn: ffn("swiglu", { bias: false }), norm: norm("rms", { eps: 1e-5 }) })) }), /rotary base 500; run.c hard-codes 10000/],
    ["partial rotary", decoder({ ...shape, posenc: posenc("rope", { dims: 6 }), norm: norm("rms", { eps: 1e-5 }), layers: depth(2, block({ attention: attention("full", { heads: 4, bias: false }), ffn: ffn("swiglu", { bias: false }), norm: norm("rms", { eps: 1e-5 }) })) }), /rotates 6 of 12 head dims/],
    ["GEGLU", decoder({ ...shape, posenc: posenc("rope"), norm: norm("rms", { eps: 1e-5 }), layers: depth(2, block({ attention: attention("full", { heads: 4, bias: false }), ffn: ffn("geglu", { bias: false }), norm: norm("rms", { eps: 1e-5 }) })) }), /activation "geglu"; run.c computes SwiGLU only/],
    ["biases", decoder({ ...shape, posenc: posenc("rope"), norm: norm("rms", { eps: 1e-5 }), layers: depth(2, block({ attention: attention("full", { heads: 4 }), ffn: ffn("swiglu"), norm: norm("rms", { eps: 1e-5 }) })) }), /attention with biases[\s\S]*FFN with biases/],
    ["sliding-window attention", decoder({ ...shape, posenc: posenc("rope"), norm: norm("rms", { eps: 1e-5 }), layers: depth(2, block({ attention: attention("sliding-window", { heads: 4, window: 8, bias: false }), ffn: ffn("swiglu", { bias: false }), norm: norm("rms", { eps: 1e-5 }) })) }), /attention "sliding-window"/],
    ["heads × head size other than the width", decoder({ ...shape, posenc: posenc("rope"), norm: norm("rms", { eps: 1e-5 }), layers: depth(2, block({ attention: attention("full", { heads: 4, headDim: 8, bias: false }), ffn: ffn("swiglu", { bias: false }), norm: norm("rms", { eps: 1e-5 }) })) }), /heads × head size 32 ≠ width 48; run.c's head size is dim \/ heads/],
    ["QK-norm", decoder({ ...shape, posenc: posenc("rope"), norm: norm("rms", { eps: 1e-5 }), layers: depth(2, block({ attention: attention("full", { heads: 4, bias: false, qkNorm: true }), ffn: ffn("swiglu", { bias: false }), norm: norm("rms", { eps: 1e-5 }) })) }), /at \["layers","block","layers",0,"body",1\]: qkNorm; run.c does not normalise queries and keys/],
    ["a logit soft-cap", decoder({ ...shape, posenc: posenc("rope"), norm: norm("rms", { eps: 1e-5 }), softcap: 30, layers: depth(2, block({ attention: attention("full", { heads: 4, bias: false }), ffn: ffn("swiglu", { bias: false }), norm: norm("rms", { eps: 1e-5 }) })) }), /at \["softcap"\]: logit soft-cap 30; run.c does not cap the logits/],
    [
      "blocks with different FFN widths",
      decoder({
        ...shape,
        posenc: posenc("rope"),
        norm: norm("rms", { eps: 1e-5 }),
        layers: stack([
          block({ attention: attention("full", { heads: 4, bias: false }), ffn: ffn("swiglu", { bias: false }), norm: norm("rms", { eps: 1e-5 }) }),
          block({ attention: attention("full", { heads: 4, bias: false }), ffn: ffn("swiglu", { hidden: 64, bias: false }), norm: norm("rms", { eps: 1e-5 }) }),
        ]),
      }),
      /block 1 differs from block 0 in heads or FFN width/,
    ],
  ]
  for (const [name, spec, reason] of refused) {
    it(`refuses ${name}, saying why`, () => {
      const result = toLlama2c(spec, randomWeights(spec, 1), tokenizer)
      expect(result.ok).toBe(false)
      if (!result.ok) expect(result.problems.join("\n")).toMatch(reason)
    })
  }

  it("refuses a run that recorded the old llama epsilon (1e-6), which keeps replaying with it", () => {
    const recorded = JSON.parse(readFileSync(join(import.meta.dirname, "../fixtures/pre-stack/llama/spec.json"), "utf8")) as { model: unknown }
    const spec = validateSpec(recorded.model as DecoderSpec)
    const result = toLlama2c(spec, randomWeights(spec, 1), tokenizer)
    expect(result.ok).toBe(false)
    if (!result.ok) expect(result.problems.every((p) => p.includes("RMSNorm epsilon 0.000001"))).toBe(true)
    if (!result.ok) expect(result.problems).toHaveLength(3)
  })
})

/**
 * run.c itself, built from the peer directory with its README's flags, on the exported files.
 * Skipped only where there is no C compiler; a missing peer directory fails.
 */
describe.skipIf(!compilerAvailable())("run.c on the exported files", () => {
  let dir = ""
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "llama2c-"))
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))
  const peer = () => buildPeer(defaultPeer, dir)
  let built: ReturnType<typeof buildPeer> | undefined
  const writeAll = (out: string, files: ReadonlyArray<{ name: string; data: Uint8Array }>): string => {
    mkdirSync(out, { recursive: true })
    for (const f of files) writeFileSync(join(out, f.name), f.data)
    return out
  }

  for (const tied of [false, true]) {
    it(`picks the same greedy tokens as our generate (${tied ? "shared" : "separate"} classifier)`, () => {
      built ??= peer()
      const spec = llama({ ...shape, tied })
      const { weights, files } = exportOf(spec, 11)
      const out = writeAll(join(dir, tied ? "tied" : "untied"), files)
      const map = llama2cIds(tokenizer)
      const back = new Map(Array.from(map, (to, from) => [to, from]))
      const prompt = [tokenizer.eotId, ...tokenizer.encode("Once upon a time, there was a")]
      const params = tensorsOf(spec, weights)
      const ours = generate(compile(spec), params, prompt, { tokens: 40, temperature: 0 }, Rng.fromSeed(1))
      tf.dispose(Object.values(params))
      const theirs = runDriver(built, join(out, "model.bin"), prompt.map((id) => map[id]!), 40, 1)
      expect(theirs.tokens.map((id) => back.get(id)!)).toEqual(ours)
    })
  }

  it("run.c's own program prints the text of our greedy story from <|endoftext|>", () => {
    built ??= peer()
    const spec = llama({ ...shape, tied: false })
    const { weights, files } = exportOf(spec, 12)
    const out = writeAll(join(dir, "stock"), files)
    const params = tensorsOf(spec, weights)
    const steps = 48
    // run.c runs `steps` positions from BOS alone and stops early if it samples BOS (= <|endoftext|>).
    const ours = generate(compile(spec), params, [tokenizer.eotId], { tokens: steps - 1, temperature: 0, stop: tokenizer.eotId }, Rng.fromSeed(1))
    tf.dispose(Object.values(params))
    // What run.c prints for each token (its decode and safe_printf): a leading space is dropped
    // after BOS, and a lone byte that is neither printable nor whitespace is skipped.
    const printable = (b: number) => (b >= 0x20 && b <= 0x7e) || (b >= 0x09 && b <= 0x0d)
    const expected = ours
      .filter((id) => id !== tokenizer.eotId)
      .map((id, i) => {
        const bytes = tokenizer.tokens[id]!
        const piece = i === 0 && bytes[0] === 0x20 ? bytes.subarray(1) : bytes
        return piece.length === 1 && !printable(piece[0]!) ? new Uint8Array() : piece
      })
    const text = Buffer.concat([...expected, Buffer.from("\n")])
    expect(runStock(built, out, steps, 1).stdout.toString("latin1")).toBe(text.toString("latin1"))
  })
})
