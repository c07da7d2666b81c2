import { createHash } from "node:crypto"
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers"
import { beforeAll, describe, expect, it } from "vitest"
import { Tokenizer } from "../../src/tokenizer/tokenizer.js"
import { trainBpe } from "../../src/tokenizer/trainer.js"
import { devStories } from "./helpers.js"

const UNICODE_SAMPLES = [
  "Hello, world! 👋🏽 Family: 👨‍👩‍👧‍👦 flags 🇳🇿",
  "猫が好きです。我喜欢读书。한국어 텍스트",
  "\u0301 lone combining acute, e\u0301 vs é, \u0308\u0308 double",
  "control \u0000\u0001\u007f bytes never seen in training \u00ad\u200b\u2028\ufeff",
  "astral 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𓀀 \u{10ffff} and \uffff",
  "tabs\t\tand   spaces  \n\n\r\n newlines   ",
  "numbers 1234567890 ١٢٣ and Ⅻ, contractions it's we'll they'd I'M",
  "مرحبا بالعالم שלום עולם Привет мир Ελληνικά",
  "",
  " ",
]

describe("byte-level BPE tokenizer trained on the development train text", () => {
  let tok: Tokenizer
  let json: string
  let hf: HfTokenizer
  let valid: string[]
  let train: string[]
  let extra: string[]

  beforeAll(async () => {
    ;[train, valid, extra] = await Promise.all([devStories("train.txt"), devStories("valid.txt"), devStories("train-extra.txt")])
    tok = trainBpe(train, { vocabSize: 4096 })
    json = tok.toJSON()
    hf = new HfTokenizer(JSON.parse(json), {})
  })

  it("round-trips every story of train, valid and train-extra", () => {
    expect(train).toHaveLength(5312)
    expect(valid).toHaveLength(700)
    expect(extra).toHaveLength(1725)
    const failures = [...train, ...valid, ...extra].filter((s) => tok.decode(tok.encode(s)) !== s)
    expect(failures).toEqual([])
  })

  it("round-trips arbitrary Unicode, including bytes never seen in training", () => {
    for (const s of UNICODE_SAMPLES) expect(tok.decode(tok.encode(s))).toBe(s)
  })

  it("encodes a lone surrogate (not valid Unicode) as U+FFFD, like TextEncoder", () => {
    expect(tok.decode(tok.encode("a\ud800b"))).toBe("a\ufffdb")
    expect(Array.from(tok.encode("a\ud800b"))).toEqual(hf.encode("a\ud800b").ids)
  })

  it("gives the same ids as @huggingface/tokenizers on all validation stories", () => {
    const mismatched = valid.filter((s) => Array.from(tok.encode(s)).join() !== hf.encode(s).ids.join())
    expect(mismatched).toEqual([])
  })

  it("gives the same ids as @huggingface/tokenizers on Unicode and on special tokens in text", () => {
    for (const s of [...UNICODE_SAMPLES.filter((x) => x !== ""), "The end.<|endoftext|>Once upon<|endoftext|>"]) {
      expect(Array.from(tok.encode(s))).toEqual(hf.encode(s).ids)
    }
    expect(hf.decode(Array.from(tok.encode(valid[3]!)))).toBe(valid[3])
  })

  it("the same ids after a save/load round trip, and the loaded file re-saves byte-identically", () => {
    const loaded = Tokenizer.fromJSON(json)
    expect(loaded.toJSON()).toBe(json)
    expect(loaded.vocabSize).toBe(tok.vocabSize)
    expect(loaded.eotId).toBe(tok.eotId)
    for (const s of valid.slice(0, 50)) expect(loaded.encode(s)).toEqual(tok.encode(s))
  })

  it("is deterministic: same text and settings give a byte-identical file and hash", () => {
    const again = trainBpe(train, { vocabSize: 4096 })
    expect(again.toJSON()).toBe(json)
    expect(again.hash).toBe(createHash("sha256").update(json).digest("hex"))
  })

  it("counts vocab like Hugging Face: specials + seen bytes + merges, unseen bytes added", () => {
    const seen = new Set(Buffer.from(train.join("")))
    expect(tok.vocabSize).toBe(4096 + (256 - seen.size))
    const parsed = JSON.parse(json)
    expect(Object.keys(parsed.model.vocab)).toHaveLength(tok.vocabSize)
    expect(parsed.model.merges).toHaveLength(4096 - 1 - seen.size)
    expect(parsed.added_tokens).toEqual([
      { id: tok.eotId, content: "<|endoftext|>", single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    ])
  })
})

describe("trainer on hand-checked corpora", () => {
  const merges = (t: Tokenizer): string[][] => JSON.parse(t.toJSON()).model.merges

  it("merges the most frequent pair first", () => {
    // Pre-tokens: "ab", " ab", " ab", "abc". Counts: (a,b)=4, then (Ġ,ab)=2, then (ab,c)=1.
    // Only 3 merges exist, so training stops there, short of the requested size.
    const t = trainBpe(["ab ab ab", "abc"], { vocabSize: 256 })
    expect(merges(t)).toEqual([
      ["a", "b"],
      ["Ġ", "ab"],
      ["ab", "c"],
    ])
    expect(Array.from(t.encode("ab abc"))).toEqual([257, 258, 99])
  })

  it("breaks ties by the smaller (left id, right id)", () => {
    // (x,y) and (y,z) both occur once; x (120) < y (121), so x+y comes first.
    const t = trainBpe(["yz", "xy"], { vocabSize: 256 })
    expect(merges(t)).toEqual([
      ["x", "y"],
      ["y", "z"],
    ])
  })

  it("never merges across or into the special token, which encodes as one id", () => {
    const t = trainBpe(Array(50).fill("end<|endoftext|>of<|endoftext|>text"), { vocabSize: 400 })
    for (const token of Object.keys(JSON.parse(t.toJSON()).model.vocab)) {
      if (token !== "<|endoftext|>" && token.length > 1) expect(token).not.toMatch(/[<|>]/)
    }
    expect(Array.from(t.encode("<|endoftext|>"))).toEqual([t.eotId])
    expect(t.decode(t.encode("a<|endoftext|>b"))).toBe("a<|endoftext|>b")
  })

  it("always holds all 256 bytes", () => {
    const t = trainBpe(["aaaa"], { vocabSize: 256 })
    const all = Uint8Array.from({ length: 256 }, (_, i) => i)
    const s = new TextDecoder("latin1").decode(all)
    expect(t.decode(t.encode(s))).toBe(s)
  })

  it("rejects a vocab size below 256 and a missing <|endoftext|>", () => {
    expect(() => trainBpe(["a"], { vocabSize: 255 })).toThrow(/vocabSize must be an integer in \[256, /)
    expect(() => trainBpe(["a"], { vocabSize: 300, specialTokens: ["<pad>"] })).toThrow(/<\|endoftext\|>/)
  })

  it("rejects tokenizer.json it cannot honour", () => {
    expect(() => Tokenizer.fromJSON("{")).toThrow(/invalid tokenizer.json: not JSON/)
    const j = JSON.parse(trainBpe(["ab"], { vocabSize: 256 }).toJSON())
    j.model.type = "WordPiece"
    expect(() => Tokenizer.fromJSON(JSON.stringify(j))).toThrow(/model.type must be "BPE"/)
  })
})
