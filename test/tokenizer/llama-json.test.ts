import { describe, expect, it } from "vitest"
import { SentencePieceTokenizer } from "../../src/tokenizer/sentencepiece.js"
import { toLlamaTokenizerJSON } from "../../src/tokenizer/llama-json.js"
import { readTokenizer } from "../../src/tokenizer/registry.js"
import { fixtureTokenizer } from "../export/fixtures.js"
import { llamaLikeVocab, llamaTokenizerJSON } from "../import/fixtures.js"

const sp = llamaLikeVocab(fixtureTokenizer(), new Set(["z"]))
const json = llamaTokenizerJSON(sp, "metaspace")
const model = json["model"] as Record<string, unknown>
const read = (patch: Record<string, unknown>) => () => readTokenizer(JSON.stringify({ ...json, ...patch }))

describe("Hugging Face Llama tokenizer.json (read as the SentencePiece kind)", () => {
  it("keeps the vocabulary with spaces for ▁, and the merges' order as scores: its tokenizer.bin encodes as the original", () => {
    const t = readTokenizer(JSON.stringify(json)) as SentencePieceTokenizer
    expect(t).toBeInstanceOf(SentencePieceTokenizer)
    expect(t.pieces.map((p) => Buffer.from(p).toString("hex"))).toEqual(sp.pieces.map((p) => Buffer.from(p).toString("hex")))
    const back = SentencePieceTokenizer.fromBin(t.toBin(), t.vocabSize)
    for (const text of ["Once upon a time, a lazy zebra ate.", "  two spaces", "café"]) expect(Array.from(back.encode(text))).toEqual(Array.from(sp.encode(text)))
  })

  it("takes pieces by their own names, not Object.prototype's (\"toString\")", () => {
    const vocab = model["vocab"] as Record<string, number>
    expect(vocab["at"]).toBeDefined()
    const n = Object.keys(vocab).length
    const merges = [...(model["merges"] as Array<[string, string]>), ["at", "oString"]]
    const t = readTokenizer(JSON.stringify({ ...json, model: { ...model, vocab: { ...vocab, oString: n, atoString: n + 1 }, merges } }))
    expect(t.vocabSize).toBe(n + 2)
  })

  it("refuses what the lab cannot compute, naming the field", () => {
    expect(read({ model: { ...model, type: "Unigram" } })).toThrow(`invalid tokenizer.json: model.type: "Unigram"; the lab reads "BPE"`)
    expect(read({ model: { ...model, byte_fallback: false } })).toThrow("invalid tokenizer.json: model.byte_fallback: false")
    expect(read({ pre_tokenizer: { type: "Whitespace" } })).toThrow(`invalid tokenizer.json: pre_tokenizer.type: "Whitespace"`)
    expect(read({ pre_tokenizer: { type: "Metaspace", replacement: "▁", prepend_scheme: "first", split: true } })).toThrow("invalid tokenizer.json: pre_tokenizer.split: true; the lab merges across words")
    expect(read({ normalizer: { type: "NFKC" } })).toThrow(`invalid tokenizer.json: normalizer: {"type":"NFKC"}`)
    expect(read({ decoder: { type: "WordPiece" } })).toThrow(`invalid tokenizer.json: decoder.type: "WordPiece"`)
  })

  it("refuses merges run.c's merging would not reproduce, and byte pieces away from run.c's ids", () => {
    const merges = model["merges"] as Array<[string, string]>
    // A piece with two splits, one of them dropped.
    const vocab = model["vocab"] as Record<string, number>
    const i = merges.findIndex(([l, r], k) => merges.some(([l2, r2], j) => j !== k && l2 + r2 === l + r))
    expect(i).toBeGreaterThanOrEqual(0)
    const [l, r] = merges[i]!
    expect(read({ model: { ...model, merges: merges.filter((_, j) => j !== i) } })).toThrow(`invalid tokenizer.json: model.merges: no merge of ${JSON.stringify(l)} and ${JSON.stringify(r)}, which make the piece ${JSON.stringify(l + r)}`)
    const swapped = { ...vocab, "<0x41>": vocab["<0x42>"], "<0x42>": vocab["<0x41>"] }
    expect(read({ model: { ...model, vocab: swapped } })).toThrow("invalid tokenizer.json: model.vocab: <0x41> has id 69; run.c's byte fallback takes byte 65 as id 68")
  })
})

describe("SentencePiece kind written as a Llama tokenizer.json (the Hugging Face export)", () => {
  const written = (t: SentencePieceTokenizer) => {
    const r = toLlamaTokenizerJSON(t)
    if ("problem" in r) throw new Error(r.problem)
    return r.json
  }
  const withPieces = (edit: (pieces: Uint8Array[]) => void) => {
    const pieces = [...sp.pieces]
    edit(pieces)
    return new SentencePieceTokenizer({ pieces, scores: sp.scores, maxTokenLength: sp.maxTokenLength })
  }

  it("reads back to the same pieces and encoding, BOS and EOS named as in the SentencePiece model", () => {
    const llama2c = withPieces((p) => {
      p[1] = new TextEncoder().encode("\n<s>\n")
      p[2] = new TextEncoder().encode("\n</s>\n")
    })
    const json = JSON.parse(written(llama2c)) as { model: { vocab: Record<string, number> } }
    expect([json.model.vocab["<s>"], json.model.vocab["</s>"]]).toEqual([1, 2])
    const back = readTokenizer(written(sp)) as SentencePieceTokenizer
    expect(back.pieces.map((p) => Buffer.from(p).toString("hex"))).toEqual(sp.pieces.map((p) => Buffer.from(p).toString("hex")))
    for (const text of ["Once upon a time, a lazy zebra ate.", "   three spaces", "naïve 🙂 \u0001", "The end."]) expect(Array.from(back.encode(text)), text).toEqual(Array.from(sp.encode(text)))
  })

  it("names what the format cannot hold", () => {
    const problem = (t: SentencePieceTokenizer) => {
      const r = toLlamaTokenizerJSON(t)
      return "problem" in r ? r.problem : ""
    }
    expect(problem(withPieces((p) => (p[300] = Uint8Array.of(0xe2, 0x82))))).toBe("tokenizer: piece 300 is not UTF-8; a tokenizer.json piece is text")
    expect(problem(withPieces((p) => (p[300] = new TextEncoder().encode("a▁b"))))).toMatch(/^tokenizer: piece 300 "a▁b" holds "▁"/)
    expect(problem(withPieces((p) => (p[300] = p[301]!)))).toMatch(/^tokenizer: pieces 300 and 301 are both/)
    expect(problem(withPieces((p) => (p[68] = new TextEncoder().encode("<A>"))))).toMatch(/^tokenizer: piece 68 is "<A>"; byte fallback needs <0x41> there/)
  })
})
