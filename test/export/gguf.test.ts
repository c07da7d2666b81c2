import * as tf from "@tensorflow/tfjs"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { type ControlledEvaluateInputItem, getLlama, type Llama, type LlamaContextSequence, LlamaLogLevel, type LlamaModel, type Token } from "node-llama-cpp"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { attention, block, decoder, type DecoderSpec, depth, ffn, llama, norm, posenc, stack } from "../../dsl/index.js"
import { generate } from "../../src/eval/generate.js"
import { encodeTensor, type GgmlType, toHalf } from "../../src/export/ggml.js"
import { toGguf } from "../../src/export/gguf.js"
import { compile } from "../../src/model/index.js"
import { Rng } from "../../src/random/rng.js"
import { Tokenizer } from "../../src/tokenizer/tokenizer.js"
import { fileOf, fixtureTokenizer, maxAbsDiff, projectLogits, randomWeights, tensorsOf } from "./fixtures.js"
import { ggufAsLlama, readGguf } from "./gguf-reader.js"
import { llamaLogits } from "./reference.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const tokenizer = fixtureTokenizer()
const vocab = tokenizer.vocabSize
/** Rows of 64 and 128 values: every matrix is Q8_0 at --type q8_0 (mult 3 gives SwiGLU 128 hidden units). */
const shape = { vocab, width: 64, context: 64, layers: 2, heads: 4, mult: 3 } as const
const ids = [tokenizer.eotId, 72, 300, 5, 677, 412, 33, 33, 90, 140, 600, 257, 258]

const exportOf = (spec: DecoderSpec, seed: number, type: GgmlType = "f32") => {
  const weights = randomWeights(spec, seed)
  const result = toGguf(spec, weights, tokenizer, {}, { type })
  if (!result.ok) throw new Error(result.problems.join("\n"))
  return { weights, bytes: fileOf(result.files, "model.gguf"), summary: result.summary }
}

const ourLogits = (spec: DecoderSpec, weights: ReturnType<typeof randomWeights>, sequence: readonly number[]): number[][] => {
  const params = tensorsOf(spec, weights)
  const logits = projectLogits(compile(spec), params, sequence)
  tf.dispose(Object.values(params))
  return logits
}

const softmax = (row: ArrayLike<number>): Float64Array => {
  const max = Math.max(...Array.from(row))
  const e = Float64Array.from(row, (x) => Math.exp(x - max))
  const sum = e.reduce((a, b) => a + b, 0)
  return e.map((x) => x / sum)
}

describe("gguf export", () => {
  it("writes GGUF version 3 with llama.cpp's llama keys, tensor names and ggml dims, each tensor 32-byte aligned", () => {
    const spec = llama({ ...shape, tied: false })
    const { bytes } = exportOf(spec, 1)
    const file = readGguf(bytes)
    expect(file.version).toBe(3)
    const m = Object.fromEntries(file.metadata)
    expect(m).toMatchObject({
      "general.alignment": 32,
      "general.architecture": "llama",
      "general.file_type": 0,
      "llama.context_length": 64,
      "llama.embedding_length": 64,
      "llama.block_count": 2,
      "llama.feed_forward_length": 128,
      "llama.attention.head_count": 4,
      "llama.attention.head_count_kv": 4,
      "llama.rope.dimension_count": 16,
      "llama.rope.freq_base": 10000,
    })
    expect(m["llama.attention.layer_norm_rms_epsilon"]).toBeCloseTo(1e-5, 10)
    expect(file.dataStart % 32).toBe(0)
    expect(bytes.length % 32).toBe(0)
    for (const t of file.tensors.values()) expect(t.offset % 32, t.name).toBe(0)
    const dims = Object.fromEntries([...file.tensors].map(([name, t]) => [name, t.dims]))
    expect(dims).toEqual({
      "token_embd.weight": [64, vocab],
      ...Object.fromEntries(
        [0, 1].flatMap((i) => [
          [`blk.${i}.attn_norm.weight`, [64]],
          [`blk.${i}.attn_q.weight`, [64, 64]],
          [`blk.${i}.attn_k.weight`, [64, 64]],
          [`blk.${i}.attn_v.weight`, [64, 64]],
          [`blk.${i}.attn_output.weight`, [64, 64]],
          [`blk.${i}.ffn_norm.weight`, [64]],
          [`blk.${i}.ffn_gate.weight`, [64, 128]],
          [`blk.${i}.ffn_up.weight`, [64, 128]],
          [`blk.${i}.ffn_down.weight`, [128, 64]],
        ]),
      ),
      "output_norm.weight": [64],
      "output.weight": [64, vocab],
    })
  })

  for (const tied of [false, true]) {
    it(`computes the project's logits (${tied ? "shared" : "separate"} head) with llama.cpp's interleaved rotary pairs`, () => {
      const spec = llama({ ...shape, tied })
      const { weights, bytes } = exportOf(spec, 5)
      const file = readGguf(bytes)
      expect(file.tensors.has("output.weight")).toBe(!tied)
      const { config, lookup } = ggufAsLlama(file)
      expect(maxAbsDiff(llamaLogits(config, lookup, ids, "interleaved"), ourLogits(spec, weights, ids))).toBeLessThan(1e-5)
    })
  }

  it("writes the tokenizer as llama.cpp's gpt2 BPE: byte-level texts, merges in rank order, <|endoftext|> a control token, BOS and EOS", () => {
    const file = readGguf(exportOf(llama(shape), 1).bytes)
    const m = file.metadata
    expect(m.get("tokenizer.ggml.model")).toBe("gpt2")
    expect(m.get("tokenizer.ggml.pre")).toBe("trillion")
    const texts = m.get("tokenizer.ggml.tokens") as string[]
    const types = m.get("tokenizer.ggml.token_type") as number[]
    expect(texts).toHaveLength(vocab)
    expect(texts[tokenizer.eotId]).toBe("<|endoftext|>")
    expect(types[tokenizer.eotId]).toBe(3)
    expect(types.filter((t) => t === 1)).toHaveLength(vocab - 1)
    // Byte 0x20 is GPT-2's "Ġ"; a merge is its two texts with a space between.
    expect(texts[tokenizer.encode(" ")[0]!]).toBe("Ġ")
    const merges = m.get("tokenizer.ggml.merges") as string[]
    expect(merges).toHaveLength(tokenizer.merges.length)
    const first = tokenizer.merges[0]!
    expect(merges[0]).toBe(`${texts[first.left]} ${texts[first.right]}`)
    expect(m.get("tokenizer.ggml.bos_token_id")).toBe(tokenizer.eotId)
    expect(m.get("tokenizer.ggml.eos_token_id")).toBe(tokenizer.eotId)
    expect(m.get("tokenizer.ggml.add_bos_token")).toBe(true)
  })

  it("rounds to f16 as ggml does: to nearest even, overflow to infinity, subnormals kept", () => {
    const cases: Array<[number, number]> = [
      [1, 0x3c00],
      [-2, 0xc000],
      [65504, 0x7bff],
      [65520, 0x7c00],
      [1 + 2 ** -11, 0x3c00],
      [1 + 3 * 2 ** -11, 0x3c02],
      [2 ** -24, 0x0001],
      [2 ** -25, 0x0000],
      [1.5 * 2 ** -24, 0x0002],
      [2 ** -14, 0x0400],
    ]
    for (const [x, bits] of cases) expect(toHalf(x), String(x)).toBe(bits)
  })

  it("quantizes Q8_0 blocks as ggml does: scale max|x| / 127 in f16, values rounded half away from zero", () => {
    const x = new Float32Array(32)
    x.set([127, 2.5, -2.5, 0.5, -0.5, -127, 1.4])
    const block = encodeTensor(x, "q8_0")
    expect(block).toHaveLength(34)
    const view = new DataView(block.buffer)
    expect(view.getUint16(0, true)).toBe(0x3c00)
    expect(Array.from(new Int8Array(block.buffer, 2, 7))).toEqual([127, 3, -3, 1, -1, -127, 1])
  })

  it("q8_0 and f16 matrices hold the weights within half a quantization step; a row not a multiple of 32 long falls back to f16", () => {
    const spec = llama({ ...shape, width: 48, mult: 4 })
    const weights = randomWeights(spec, 2)
    for (const type of ["f16", "q8_0"] as const) {
      const result = toGguf(spec, weights, tokenizer, {}, { type })
      if (!result.ok) throw new Error(result.problems.join("\n"))
      const file = readGguf(fileOf(result.files, "model.gguf"))
      expect(file.metadata.get("general.file_type")).toBe(type === "f16" ? 1 : 7)
      const typeOf = (name: string) => file.tensors.get(name)!.type
      expect(typeOf("blk.0.attn_norm.weight")).toBe(0)
      // Width 48 rows are f16 either way; the FFN's 128-wide rows (ffn_down's) are Q8_0 at q8_0.
      expect(typeOf("token_embd.weight")).toBe(1)
      expect(typeOf("blk.0.attn_q.weight")).toBe(1)
      expect(typeOf("blk.0.ffn_down.weight")).toBe(type === "f16" ? 1 : 8)
      const down = file.tensors.get("blk.0.ffn_down.weight")!
      const ours = weights["blocks.0.1.ffn.w_out"]!
      const [cols, rows] = down.dims as [number, number]
      const original = (r: number, c: number) => ours[c * rows + r]!
      let worst = 0
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < cols; c++) {
          const x = original(r, c)
          const start = c - (c % 32)
          const amax = Math.max(...Array.from({ length: 32 }, (_, k) => Math.abs(original(r, start + k))))
          // f16's unit in the last place (subnormals below 2^-14).
          const step = type === "f16" ? 2 ** (Math.max(Math.floor(Math.log2(Math.abs(x))), -14) - 10) : amax / 127
          worst = Math.max(worst, Math.abs(down.values[r * cols + c]! - x) / step)
        }
      }
      // f16: half a unit in the last place. Q8_0: half a step, plus 127 values rounded with the exact scale and multiplied by its f16 rounding.
      expect(worst).toBeLessThanOrEqual(type === "f16" ? 0.5 : 0.5 + 127 * 2 ** -11)
    }
  })

  it("accepts any rotary base and RMSNorm epsilon, recording them, and names a dropped depth policy", () => {
    const spec = decoder({
      ...shape,
      posenc: posenc("rope", { base: 500 }),
      norm: norm("rms", { eps: 1e-6 }),
      layers: depth(2, block({ attention: attention("full", { heads: 4, bias: false }), ffn: ffn("swiglu", { mult: 3, bias: false }), norm: norm("rms", { eps: 1e-6 }) })),
    })
    const result = toGguf(spec, randomWeights(spec, 1), tokenizer, { droppedPolicy: "layer-drop(p=0.1)" }, {})
    if (!result.ok) throw new Error(result.problems.join("\n"))
    const m = readGguf(fileOf(result.files, "model.gguf")).metadata
    expect(m.get("llama.rope.freq_base")).toBe(500)
    expect(m.get("llama.attention.layer_norm_rms_epsilon")).toBeCloseTo(1e-6, 12)
    expect(m.get("tinystories_lab.dropped_depth_policy")).toBe("layer-drop(p=0.1)")
  })

  const rms = norm("rms", { eps: 1e-5 })
  const plain = { attention: attention("full", { heads: 4, bias: false }), ffn: ffn("swiglu", { mult: 3, bias: false }), norm: rms }
  const refused: Array<[string, DecoderSpec, RegExp]> = [
    ["LayerNorm", decoder({ ...shape, posenc: posenc("rope"), layers: depth(2, block({ ...plain, norm: norm("layer") })), norm: norm("layer") }), /norm "layer"; llama.cpp's llama architecture computes RMSNorm only/],
    ["norms with different epsilons", decoder({ ...shape, posenc: posenc("rope"), norm: norm("rms", { eps: 1e-6 }), layers: depth(2, block(plain)) }), /at \["norm"\]: the norms have different epsilons/],
    ["learned positions", decoder({ ...shape, norm: rms, layers: depth(2, block(plain)) }), /position scheme "learned"/],
    ["partial rotary", decoder({ ...shape, posenc: posenc("rope", { dims: 8 }), norm: rms, layers: depth(2, block(plain)) }), /at \["posenc","dims"\]: rotates 8 of 16 head dims; llama.cpp's llama architecture rotates the whole head/],
    ["GEGLU", decoder({ ...shape, posenc: posenc("rope"), norm: rms, layers: depth(2, block({ ...plain, ffn: ffn("geglu", { bias: false }) })) }), /activation "geglu"; llama.cpp's llama architecture computes SwiGLU only/],
    ["biases", decoder({ ...shape, posenc: posenc("rope"), norm: rms, layers: depth(2, block({ ...plain, attention: attention("full", { heads: 4 }), ffn: ffn("swiglu") })) }), /attention with biases[\s\S]*FFN with biases/],
    ["sliding-window attention", decoder({ ...shape, posenc: posenc("rope"), norm: rms, layers: depth(2, block({ ...plain, attention: attention("sliding-window", { heads: 4, window: 8, bias: false }) })) }), /attention "sliding-window"/],
    ["heads × head size other than the width", decoder({ ...shape, posenc: posenc("rope"), norm: rms, layers: depth(2, block({ ...plain, attention: attention("full", { heads: 4, headDim: 8, bias: false }) })) }), /heads × head size 32 ≠ width 64/],
    ["blocks with different FFN widths", decoder({ ...shape, posenc: posenc("rope"), norm: rms, layers: stack([block(plain), block({ ...plain, ffn: ffn("swiglu", { hidden: 64, bias: false }) })]) }), /block 1 differs from block 0 in heads or FFN width/],
    ["QK-norm in one block", decoder({ ...shape, posenc: posenc("rope"), norm: rms, layers: stack([block(plain), block({ ...plain, attention: attention("full", { heads: 4, bias: false, qkNorm: true }) })]) }), /^at \["layers","blocks",1,"layers",0,"body",1\]: qkNorm; llama.cpp's llama architecture does not normalise queries and keys$/],
    ["a logit soft-cap", decoder({ ...shape, posenc: posenc("rope"), norm: rms, softcap: 30, layers: depth(2, block(plain)) }), /^at \["softcap"\]: logit soft-cap 30; llama.cpp's llama architecture does not cap the logits$/],
  ]
  for (const [name, spec, reason] of refused) {
    it(`refuses ${name}, saying why and where`, () => {
      const result = toGguf(spec, randomWeights(spec, 1), tokenizer, {}, {})
      expect(result.ok).toBe(false)
      if (!result.ok) expect(result.problems.join("\n")).toMatch(reason)
    })
  }

  it("refuses a tokenizer with two tokens of the same text, which llama.cpp's vocabulary would merge", () => {
    const utf8 = (s: string) => new TextEncoder().encode(s)
    const twice = new Tokenizer({
      tokens: [...Array.from({ length: 256 }, (_, b) => Uint8Array.of(b)), utf8("th"), utf8("th"), utf8("<|endoftext|>")],
      specials: [{ content: "<|endoftext|>", id: 258 }],
      merges: [
        { left: 116, right: 104, id: 256 },
        { left: 116, right: 104, id: 257 },
      ],
    })
    const spec = llama({ ...shape, vocab: 259 })
    const result = toGguf(spec, randomWeights(spec, 1), twice, {}, {})
    expect(result.ok).toBe(false)
    if (!result.ok) expect(result.problems).toEqual(['tokenizer: tokens 256 and 257 are both "th"; llama.cpp\'s vocabulary holds each text once'])
  })
})

/**
 * llama.cpp itself (node-llama-cpp's prebuilt CPU binaries) on the exported files. Its
 * probabilities are softmax(logits) over the whole vocabulary, as node-llama-cpp computes
 * them after the greedy sampler (temperature 0), which leaves the logits as they are.
 */
describe("llama.cpp on the exported file", () => {
  let dir = ""
  let runtime: Llama
  const loaded: LlamaModel[] = []
  const spec = llama({ ...shape, tied: false })
  const weights = randomWeights(spec, 11)
  const sequences = {} as Record<"f32" | "f16" | "q8_0" | "tied", LlamaContextSequence>
  const tied = llama({ ...shape, tied: true })
  const tiedWeights = randomWeights(tied, 12)
  // Weights of std 0.3 make attention so peaked that Q8_0's rounding of the weights alone
  // moves probabilities by 0.06; f16 and q8_0 are compared on weights of std 0.1.
  const softWeights = randomWeights(spec, 11, 0.1)

  /** llama.cpp keeps keys and values in f16 by default: float32 ones, and no flash attention, compute attention as the project does. */
  const float32Attention = { experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32", flashAttention: false } as const

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "gguf-"))
    runtime = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error })
    const load = async (name: keyof typeof sequences, s: DecoderSpec, w: typeof weights, type: GgmlType) => {
      const result = toGguf(s, w, tokenizer, {}, { type })
      if (!result.ok) throw new Error(result.problems.join("\n"))
      const modelPath = join(dir, `${name}.gguf`)
      writeFileSync(modelPath, fileOf(result.files, "model.gguf"))
      const model = await runtime.loadModel({ modelPath })
      loaded.push(model)
      sequences[name] = (await model.createContext({ contextSize: 64, threads: 1, ...float32Attention })).getSequence()
    }
    await load("f32", spec, weights, "f32")
    await load("f16", spec, softWeights, "f16")
    await load("q8_0", spec, softWeights, "q8_0")
    await load("tied", tied, tiedWeights, "f32")
  }, 60_000)
  afterAll(async () => {
    for (const m of loaded) await m.dispose()
    await runtime?.dispose()
    rmSync(dir, { recursive: true, force: true })
  })

  /** Probabilities of the next token after each position of `sequence`, by token id. */
  const theirProbabilities = async (seq: LlamaContextSequence, sequence: readonly number[]): Promise<Float64Array[]> => {
    await seq.clearHistory()
    const out = await seq.controlledEvaluate(sequence.map((t): ControlledEvaluateInputItem => [t as Token, { generateNext: { probabilities: true } }]))
    return sequence.map((_, i) => {
      const p = new Float64Array(vocab)
      for (const [token, prob] of out[i]!.next.probabilities!) p[token] = prob
      return p
    })
  }

  const greedy = async (seq: LlamaContextSequence, prompt: readonly number[], tokens: number): Promise<number[]> => {
    await seq.clearHistory()
    const out: number[] = []
    let input: ControlledEvaluateInputItem[] = prompt.map((t, i): ControlledEvaluateInputItem => (i === prompt.length - 1 ? [t as Token, { generateNext: { token: true } }] : (t as Token)))
    while (out.length < tokens) {
      const next = (await seq.controlledEvaluate(input))[input.length - 1]!.next.token!
      out.push(next)
      input = [[next, { generateNext: { token: true } }]]
    }
    return out
  }

  const stories = [
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the sun.",
    'Tom said, "Wow, look at the big red ball!" His mom smiled and replied, "Thank you, Tom. It\'s yours."',
    "One day, a dog named Max found a stick. He ran home.\n\nThe end.",
  ]
  const awkward = [
    "  two  spaces   and trailing   ",
    "new\n\nlines\n \n\tand\ttabs\r\n",
    "don't we'll I'M they'RE it's you've I'd",
    "naïve café 東京 😀 Ünïcödé e\u0301",
    "12345 3.14 1,000,000 ٣٤٥ Ⅻ ½ ²",
    "a\u00a0b\u0085c\ufeffd\u2028e\u3000f\u200bg",
    "Hi . Yes , no ! ok ? it 's !!!??? ...---",
    "",
  ]

  it("tokenises stories and awkward strings as the project does, and turns the tokens back into the same text", () => {
    const model = loaded[0]!
    expect(model.tokens.bos).toBe(tokenizer.eotId)
    expect(model.tokens.eos).toBe(tokenizer.eotId)
    for (const text of [...stories, ...awkward]) {
      const theirs = model.tokenize(text)
      expect(theirs, JSON.stringify(text)).toEqual(Array.from(tokenizer.encode(text)))
      expect(model.detokenize(theirs), JSON.stringify(text)).toBe(text)
    }
    // With special tokens parsed, <|endoftext|> in the text is the one token, as the project always reads it.
    const joined = stories.join("\n<|endoftext|>\n")
    expect(model.tokenize(joined, true)).toEqual(Array.from(tokenizer.encode(joined)))
  })

  it("generates greedily the same tokens as generate from the same prompt ids (f32)", async () => {
    const prompt = [tokenizer.eotId, ...tokenizer.encode("Once upon a time, there was a")]
    const params = tensorsOf(spec, weights)
    const ours = generate(compile(spec), params, prompt, { tokens: 40, temperature: 0 }, Rng.fromSeed(1))
    tf.dispose(Object.values(params))
    expect(await greedy(sequences.f32, prompt, 40)).toEqual(ours)
  })

  /** Measured: 5e-7 (f32, float32 rounding), 2e-5 (f16), 5e-4 (q8_0, which quantizes the activations too). */
  const tolerance = { f32: 2e-6, f16: 1e-4, q8_0: 2e-3 } as const
  for (const type of ["f32", "f16", "q8_0"] as const) {
    it(`gives next-token probabilities within ${tolerance[type]} of ours (${type})`, async () => {
      const ours = ourLogits(spec, type === "f32" ? weights : softWeights, ids).map(softmax)
      expect(maxAbsDiff(await theirProbabilities(sequences[type], ids), ours)).toBeLessThan(tolerance[type])
    })
  }

  it("reads the token embedding as the head when the model shares it (f32)", async () => {
    const ours = ourLogits(tied, tiedWeights, ids).map(softmax)
    expect(maxAbsDiff(await theirProbabilities(sequences.tied, ids), ours)).toBeLessThan(tolerance.f32)
  })
})
