import { readFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { readTokenizer } from "../../src/tokenizer/registry.js"
import { SentencePieceTokenizer } from "../../src/tokenizer/sentencepiece.js"
import { Tokenizer } from "../../src/tokenizer/tokenizer.js"

const utf8 = new TextEncoder()

/** <unk>, <s>, </s>, the 256 byte pieces, then scored pieces (a higher score merges first). */
const vocab = (scored: ReadonlyArray<[string | Uint8Array, number]>): SentencePieceTokenizer => {
  const pieces: Uint8Array[] = ["<unk>", "<s>", "</s>"].map((s) => utf8.encode(s))
  const scores: number[] = [0, 0, 0]
  for (let b = 0; b < 256; b++) {
    pieces.push(utf8.encode(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`))
    scores.push(0)
  }
  for (const [p, s] of scored) {
    pieces.push(typeof p === "string" ? utf8.encode(p) : p)
    scores.push(s)
  }
  return new SentencePieceTokenizer({ pieces, scores, maxTokenLength: Math.max(...pieces.map((p) => p.length)) })
}

const sp = vocab([
  [" ", -1],
  ["a", -1],
  ["b", -1],
  ["c", -1],
  ["é", -1],
  ["ab", -5],
  ["bc", -2],
  [" a", -3],
  [" abc", -4],
  [Uint8Array.of(0xe2, 0x82), -9],
])
const id = (piece: string) => sp.pieces.findIndex((p) => new TextDecoder().decode(p) === piece)

describe("SentencePiece tokenizer (llama2.c's tokenizer.bin)", () => {
  it("prepends the dummy-prefix space and merges the best-scoring pair first, the leftmost of equals", () => {
    // [" ", a, b, c] → (b, c) scores -2 → [" ", a, bc] → " a" (-3) → [" a", bc] → " abc" (-4).
    expect(Array.from(sp.encode("abc"))).toEqual([id(" abc")])
    // [" ", a, b, a, b]: " a" (-3) beats the "ab" (-5) it overlaps; the other "ab" still merges.
    expect(Array.from(sp.encode("abab"))).toEqual([id(" a"), id("b"), id("ab")])
    expect(Array.from(sp.encode("ab"))).toEqual([id(" a"), id("b")])
    expect(Array.from(sp.encode(""))).toEqual([])
  })

  it("takes a codepoint missing from the vocabulary as its bytes (id 3 + byte), and a known one whole", () => {
    expect(Array.from(sp.encode("é€"))).toEqual([id(" "), id("é"), ...Array.from(utf8.encode("€"), (b) => 3 + b)])
  })

  it("decodes <0xNN> pieces to their byte and drops the leading space of the piece after BOS", () => {
    expect(sp.decode([1, ...sp.encode("abc é€")])).toBe("<s>abc é€")
    expect(sp.decode(sp.encode("abc"))).toBe(" abc")
  })

  it("writes its tokenizer.json with a kind tag, pieces that are not UTF-8 as hex, and reads it back", () => {
    const json = sp.toJSON()
    expect(JSON.parse(json)).toMatchObject({ kind: "sentencepiece", maxTokenLength: 6 })
    expect(json).toContain(`{"hex":"e282"}`)
    const back = readTokenizer(json)
    expect(back).toBeInstanceOf(SentencePieceTokenizer)
    expect((back as SentencePieceTokenizer).toBin()).toEqual(sp.toBin())
    expect(back.hash).toBe(sp.hash)
    expect(back.eotId).toBe(1)
  })

  it("reads tokenizer.bin for the model's vocab_size, refusing a file of another size", () => {
    const bin = sp.toBin()
    expect(SentencePieceTokenizer.fromBin(bin, sp.vocabSize).toJSON()).toBe(sp.toJSON())
    expect(() => SentencePieceTokenizer.fromBin(bin, sp.vocabSize - 1)).toThrow(/bytes left after the model's vocab_size 268 pieces/)
    expect(() => SentencePieceTokenizer.fromBin(bin, sp.vocabSize + 1)).toThrow(/within piece 269; the model's vocab_size is 270/)
  })
})

describe("tokenizer registry", () => {
  it("reads a run's Hugging Face tokenizer.json without a kind (every run before kinds) as the byte-level BPE", () => {
    const text = readFileSync(join(import.meta.dirname, "../fixtures/pre-stack/gpt2/tokenizer.json"), "utf8")
    const t = readTokenizer(text)
    expect(t.kind).toBe("bpe")
    expect(t.hash).toBe(Tokenizer.fromJSON(text).hash)
  })

  it("refuses a kind it does not know, listing the kinds", () => {
    expect(() => readTokenizer(`{"kind":"wordpiece"}`)).toThrow(`invalid tokenizer.json: kind "wordpiece" is not one of bpe, sentencepiece`)
  })
})
