import { Rng } from "../../src/random/rng.js"
import { SentencePieceTokenizer } from "../../src/tokenizer/sentencepiece.js"
import type { Tokenizer } from "../../src/tokenizer/tokenizer.js"

/**
 * llama2.c's model.bin written from export.py's description (legacy_export, version1_export,
 * version2_export and quantize_q80), independently of the importer: a model is its header and
 * its tensors in run.c's layout, every matrix [out, in].
 */
export interface RuncModel {
  readonly dim: number
  readonly hidden: number
  readonly layers: number
  readonly heads: number
  readonly kvHeads: number
  readonly vocab: number
  readonly seqLen: number
  readonly shared: boolean
  readonly t: {
    readonly emb: Float32Array
    readonly rmsAtt: Float32Array
    readonly wq: Float32Array
    readonly wk: Float32Array
    readonly wv: Float32Array
    readonly wo: Float32Array
    readonly rmsFfn: Float32Array
    readonly w1: Float32Array
    readonly w2: Float32Array
    readonly w3: Float32Array
    readonly rmsFinal: Float32Array
    readonly wcls: Float32Array
  }
}

/** A seeded model; gains near 1, weights large enough that greedy choices are clear. */
export const seededModel = (o: { dim: number; hidden: number; layers: number; heads: number; vocab: number; seqLen: number; shared: boolean; kvHeads?: number }, seed: number): RuncModel => {
  const rng = Rng.derive(seed, "llama2c-import-test")
  const normal = (n: number, scale: number, base = 0) => Float32Array.from({ length: n }, () => base + scale * rng.nextNormal())
  const { dim, hidden, layers, vocab } = o
  return {
    ...o,
    kvHeads: o.kvHeads ?? o.heads,
    t: {
      emb: normal(vocab * dim, 0.5),
      rmsAtt: normal(layers * dim, 0.2, 1),
      wq: normal(layers * dim * dim, 0.3),
      wk: normal(layers * dim * dim, 0.3),
      wv: normal(layers * dim * dim, 0.3),
      wo: normal(layers * dim * dim, 0.3),
      rmsFfn: normal(layers * dim, 0.2, 1),
      w1: normal(layers * hidden * dim, 0.3),
      w2: normal(layers * dim * hidden, 0.3),
      w3: normal(layers * hidden * dim, 0.3),
      rmsFinal: normal(dim, 0.2, 1),
      wcls: o.shared ? new Float32Array() : normal(vocab * dim, 0.5),
    },
  }
}

const concat = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0))
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 0)
  return out
}
const f32 = (a: Float32Array): Uint8Array => new Uint8Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength))
const ints = (...xs: number[]): Uint8Array => new Uint8Array(Int32Array.from(xs).buffer)

const versionedHeader = (m: RuncModel, version: number, extra: Uint8Array): Uint8Array => {
  const head = concat([new Uint8Array(new Uint32Array([0x616b3432]).buffer), ints(version), ints(m.dim, m.hidden, m.layers, m.heads, m.kvHeads, m.vocab, m.seqLen), Uint8Array.of(m.shared ? 1 : 0), extra])
  const out = new Uint8Array(256)
  out.set(head)
  return out
}

/** Version 0: the 7-int header (a negative vocab_size for a separate classifier), then run.c's order, RoPE tables included. */
export const writeV0 = (m: RuncModel): Uint8Array => {
  const head = m.dim / m.heads
  const freqs = new Float32Array(m.seqLen * (head / 2))
  for (let p = 0; p < m.seqLen; p++) for (let j = 0; j < head / 2; j++) freqs[p * (head / 2) + j] = p * 10000 ** ((-2 * j) / head)
  const t = m.t
  return concat([
    ints(m.dim, m.hidden, m.layers, m.heads, m.kvHeads, m.shared ? m.vocab : -m.vocab, m.seqLen),
    ...[t.emb, t.rmsAtt, t.wq, t.wk, t.wv, t.wo, t.rmsFfn, t.w1, t.w2, t.w3, t.rmsFinal, freqs.map(Math.cos), freqs.map(Math.sin), ...(m.shared ? [] : [t.wcls])].map(f32),
  ])
}

/** Version 1: the 256-byte "ak42" header, the norms first, then the matrices. */
export const writeV1 = (m: RuncModel): Uint8Array => {
  const t = m.t
  return concat([versionedHeader(m, 1, new Uint8Array()), ...[t.rmsAtt, t.rmsFfn, t.rmsFinal, t.emb, t.wq, t.wk, t.wv, t.wo, t.w1, t.w2, t.w3, ...(m.shared ? [] : [t.wcls])].map(f32)])
}

/** Q8_0: per group of `size`, scale = max |w| / 127 and q = round(w / scale) (torch.round: half to even). */
const quantise = (w: Float32Array, size: number): { q: Int8Array; scales: Float32Array; dequantised: Float32Array } => {
  const q = new Int8Array(w.length)
  const scales = new Float32Array(w.length / size)
  const dequantised = new Float32Array(w.length)
  const roundHalfEven = (x: number) => {
    const r = Math.round(x)
    return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r
  }
  for (let g = 0; g < scales.length; g++) {
    let max = 0
    for (let i = g * size; i < (g + 1) * size; i++) max = Math.max(max, Math.abs(w[i]!))
    const scale = Math.fround(max / 127)
    scales[g] = scale
    for (let i = g * size; i < (g + 1) * size; i++) {
      q[i] = roundHalfEven(Math.fround(w[i]! / scale))
      dequantised[i] = Math.fround(q[i]! * scale)
    }
  }
  return { q, scales, dequantised }
}

/** Version 2: the header with the group size, float32 norms, every matrix's int8 values, then all their scales. */
export const writeV2 = (m: RuncModel, groupSize: number): { bytes: Uint8Array; dequantised: RuncModel } => {
  const t = m.t
  const names: ReadonlyArray<keyof RuncModel["t"]> = ["emb", "wq", "wk", "wv", "wo", "w1", "w2", "w3", ...(m.shared ? [] : (["wcls"] as const))]
  const quantised = names.map((n) => quantise(t[n], groupSize))
  const bytes = concat([
    versionedHeader(m, 2, ints(groupSize)),
    ...[t.rmsAtt, t.rmsFfn, t.rmsFinal].map(f32),
    ...quantised.map((x) => new Uint8Array(x.q.buffer)),
    ...quantised.map((x) => f32(x.scales)),
  ])
  const replaced = Object.fromEntries(names.map((n, i) => [n, quantised[i]!.dequantised]))
  return { bytes, dequantised: { ...m, t: { ...t, ...replaced } } }
}

/**
 * A Llama-like tokenizer.bin vocabulary: <unk>, <s>, </s>, the byte pieces <0x00>…<0xFF> at
 * 3 + byte, then pieces scored by rank: the BPE fixture's multi-byte tokens that are whole
 * UTF-8 (as SentencePiece's pieces are text), and single characters except a few, which then
 * take the byte fallback (as do characters outside ASCII).
 */
export const llamaLikeVocab = (bpe: Tokenizer, missing: ReadonlySet<string>): SentencePieceTokenizer => {
  const utf8 = new TextEncoder()
  const pieces: Uint8Array[] = ["<unk>", "<s>", "</s>"].map((s) => utf8.encode(s))
  const scores: number[] = [0, 0, 0]
  for (let b = 0; b < 256; b++) {
    pieces.push(utf8.encode(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`))
    scores.push(0)
  }
  const latin1 = (b: Uint8Array) => String.fromCharCode(...b)
  const seen = new Set(pieces.map(latin1))
  const specials = new Set(bpe.specials.map((s) => s.id))
  // Single ASCII characters (the fixture's byte tokens), then its merges in rank order.
  const singles = bpe.tokens.filter((b, id) => b.length === 1 && b[0]! < 0x80 && !specials.has(id) && !missing.has(String.fromCharCode(b[0]!)))
  const merged = bpe.merges.map((m) => bpe.tokens[m.id]!)
  const strict = new TextDecoder("utf-8", { fatal: true })
  const text = (b: Uint8Array) => {
    try {
      strict.decode(b)
      return true
    } catch {
      return false
    }
  }
  for (const piece of [...singles, ...merged]) {
    if (seen.has(latin1(piece)) || !text(piece)) continue
    seen.add(latin1(piece))
    pieces.push(piece)
    scores.push(-pieces.length)
  }
  return new SentencePieceTokenizer({ pieces, scores, maxTokenLength: Math.max(...pieces.map((p) => p.length)) })
}

/**
 * The Hugging Face tokenizer.json of a SentencePiece vocabulary as transformers' LlamaConverter
 * writes it, independently of the lab's reader: pieces with "▁" for the space, BPE with byte
 * fallback, and as merges every split of a piece into two pieces, the pieces by score (highest
 * first), each piece's splits by their ids. `spaces` picks the older normalizer (Prepend,
 * Replace) or the newer Metaspace pre-tokenizer.
 */
export const llamaTokenizerJSON = (sp: SentencePieceTokenizer, spaces: "normalizer" | "metaspace"): Record<string, unknown> => {
  const text = sp.pieces.map((p) => new TextDecoder("utf-8", { fatal: true }).decode(p).replaceAll(" ", "▁"))
  const vocab = Object.fromEntries(text.map((p, id) => [p, id]))
  const has = (p: string) => Object.hasOwn(vocab, p)
  const byScore = text.map((p, id) => ({ p, id })).sort((a, b) => sp.scores[b.id]! - sp.scores[a.id]! || a.id - b.id)
  const merges: Array<[string, string]> = []
  for (const { p } of byScore) {
    const chars = Array.from(p)
    const splits: Array<[string, string]> = []
    for (let i = 1; i < chars.length; i++) {
      const [l, r] = [chars.slice(0, i).join(""), chars.slice(i).join("")]
      if (has(l) && has(r)) splits.push([l, r])
    }
    merges.push(...splits.sort((a, b) => vocab[a[0]]! - vocab[b[0]]! || vocab[a[1]]! - vocab[b[1]]!))
  }
  const special = (id: number) => ({ id, content: text[id], single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [special(0), special(1), special(2)],
    normalizer: spaces === "normalizer" ? { type: "Sequence", normalizers: [{ type: "Prepend", prepend: "▁" }, { type: "Replace", pattern: { String: " " }, content: "▁" }] } : null,
    pre_tokenizer: spaces === "metaspace" ? { type: "Metaspace", replacement: "▁", prepend_scheme: "first", split: false } : null,
    post_processor: { type: "TemplateProcessing", single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }], pair: [], special_tokens: {} },
    decoder: {
      type: "Sequence",
      decoders: [{ type: "Replace", pattern: { String: "▁" }, content: " " }, { type: "ByteFallback" }, { type: "Fuse" }, { type: "Strip", content: " ", start: 1, stop: 0 }],
    },
    model: { type: "BPE", dropout: null, unk_token: "<unk>", continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab, merges: spaces === "normalizer" ? merges.map((m) => m.join(" ")) : merges },
  }
}
