import { createHash } from "node:crypto"
import { bytesToTokenString, tokenStringToBytes } from "./bytes.js"
import { GPT2_SPLIT, specialMatcher, splitSpecial } from "./pretokenize.js"
import type { TextTokenizer } from "./text-tokenizer.js"

/** Merge `rank`: the adjacent pair (left, right) becomes token `id`. */
export interface Merge {
  readonly left: number
  readonly right: number
  readonly id: number
}

export interface SpecialToken {
  readonly content: string
  readonly id: number
}

export interface TokenizerSpec {
  /** UTF-8 bytes of every token by id (special tokens: their content); ids are dense. */
  readonly tokens: readonly Uint8Array[]
  readonly specials: readonly SpecialToken[]
  /** In rank order: earlier merges apply first. */
  readonly merges: readonly Merge[]
}

export const END_OF_TEXT = "<|endoftext|>"

/** Pair keys pack two ids into one number; ids stay below 2^21, so keys stay exact. */
export const PAIR_SHIFT = 2 ** 21
export const MAX_VOCAB = PAIR_SHIFT
export const pairKey = (left: number, right: number): number => left * PAIR_SHIFT + right

/** The word cache is cleared when it grows past this, bounding memory on unusual text. */
const WORD_CACHE_LIMIT = 1 << 18

class IdBuffer {
  private data = new Uint32Array(1024)
  length = 0

  push(id: number): void {
    if (this.length === this.data.length) this.grow()
    this.data[this.length++] = id
  }

  pushAll(ids: Uint32Array): void {
    while (this.length + ids.length > this.data.length) this.grow()
    this.data.set(ids, this.length)
    this.length += ids.length
  }

  toArray(): Uint32Array {
    return this.data.slice(0, this.length)
  }

  private grow(): void {
    const next = new Uint32Array(this.data.length * 2)
    next.set(this.data)
    this.data = next
  }
}

/**
 * A byte-level BPE tokenizer: GPT-2 pre-tokenization, merges applied in rank order within
 * each piece, special tokens matched literally and never merged. Compatible with Hugging
 * Face tokenizer.json (BPE model, ByteLevel pre-tokenizer and decoder).
 */
export class Tokenizer implements TextTokenizer {
  readonly kind = "bpe"
  /** The lab's stories end with <|endoftext|>; a prompt starts a story as it is. */
  readonly promptStart: readonly number[] = []
  readonly vocabSize: number
  /** Id of `<|endoftext|>`. */
  readonly eotId: number
  /** UTF-8 bytes of every token by id (special tokens: their content); exporters write them out. */
  readonly tokens: readonly Uint8Array[]
  readonly specials: readonly SpecialToken[]
  private readonly specialIds: ReadonlyMap<string, number>
  /** In rank order. */
  readonly merges: readonly Merge[]
  private readonly byteToId: Uint32Array
  private readonly ranks = new Map<number, number>()
  private readonly cache = new Map<string, Uint32Array>()
  private readonly utf8 = new TextEncoder()
  private readonly specialRe: RegExp | undefined
  /** One instance reused (lastIndex reset) since encoding is synchronous and not re-entrant. */
  private readonly splitRe = new RegExp(GPT2_SPLIT)
  private json: string | undefined
  private digest: string | undefined

  constructor(spec: TokenizerSpec) {
    this.tokens = spec.tokens
    this.vocabSize = spec.tokens.length
    if (this.vocabSize > MAX_VOCAB) throw new Error(`vocab size ${this.vocabSize} exceeds the maximum ${MAX_VOCAB}`)
    this.specials = spec.specials
    this.specialIds = new Map(spec.specials.map((s) => [s.content, s.id]))
    const eot = this.specialIds.get(END_OF_TEXT)
    if (eot === undefined) throw new Error(`tokenizer has no ${END_OF_TEXT} special token`)
    this.eotId = eot
    this.specialRe = specialMatcher(spec.specials.map((s) => s.content))
    const specialSet = new Set(spec.specials.map((s) => s.id))
    this.byteToId = new Uint32Array(256).fill(0xffffffff)
    spec.tokens.forEach((bytes, id) => {
      if (bytes.length === 1 && !specialSet.has(id)) this.byteToId[bytes[0]!] = id
    })
    const missing = this.byteToId.findIndex((id) => id === 0xffffffff)
    if (missing >= 0) throw new Error(`tokenizer has no token for byte 0x${missing.toString(16).padStart(2, "0")}`)
    this.merges = spec.merges
    spec.merges.forEach((m, rank) => {
      const key = pairKey(m.left, m.right)
      if (!this.ranks.has(key)) this.ranks.set(key, rank)
    })
  }

  get label(): string {
    return `byte-level BPE, ${this.vocabSize} ids`
  }

  encode(text: string): Uint32Array {
    const out = new IdBuffer()
    splitSpecial(
      text,
      this.specialRe,
      (part) => this.encodeOrdinary(part, out),
      (special) => out.push(this.specialIds.get(special)!),
    )
    return out.toArray()
  }

  decode(ids: ArrayLike<number>): string {
    let total = 0
    for (let i = 0; i < ids.length; i++) total += this.token(ids[i]!).length
    const bytes = new Uint8Array(total)
    let at = 0
    for (let i = 0; i < ids.length; i++) {
      const t = this.token(ids[i]!)
      bytes.set(t, at)
      at += t.length
    }
    return new TextDecoder().decode(bytes)
  }

  /** sha256 (hex) of `toJSON()`: identifies the tokenizer in cache keys. */
  get hash(): string {
    this.digest ??= createHash("sha256").update(this.toJSON()).digest("hex")
    return this.digest
  }

  /** Hugging Face tokenizer.json; vocab in id order, so the text is byte-stable. */
  toJSON(): string {
    this.json ??= this.renderJSON()
    return this.json
  }

  static fromJSON(text: string): Tokenizer {
    return new Tokenizer(parseTokenizerJSON(text))
  }

  private token(id: number): Uint8Array {
    const t = this.tokens[id]
    if (t === undefined) throw new Error(`token id ${id} is outside the vocabulary (size ${this.vocabSize})`)
    return t
  }

  private encodeOrdinary(text: string, out: IdBuffer): void {
    const re = this.splitRe
    re.lastIndex = 0
    const cache = this.cache
    let m: RegExpExecArray | null
    while ((m = re.exec(text)) !== null) {
      const piece = m[0]
      let ids = cache.get(piece)
      if (ids === undefined) {
        ids = this.encodePiece(piece)
        if (cache.size >= WORD_CACHE_LIMIT) cache.clear()
        cache.set(piece, ids)
      }
      if (ids.length === 1) out.push(ids[0]!)
      else out.pushAll(ids)
    }
  }

  /** BPE on one pre-token: repeatedly merge every occurrence of the lowest-ranked pair. */
  private encodePiece(piece: string): Uint32Array {
    const bytes = this.utf8.encode(piece)
    const syms = new Uint32Array(bytes.length)
    for (let i = 0; i < bytes.length; i++) syms[i] = this.byteToId[bytes[i]!]!
    let n = syms.length
    while (n > 1) {
      let best = Infinity
      for (let i = 0; i + 1 < n; i++) {
        const r = this.ranks.get(pairKey(syms[i]!, syms[i + 1]!))
        if (r !== undefined && r < best) best = r
      }
      if (best === Infinity) break
      const { left, right, id } = this.merges[best]!
      let w = 0
      for (let i = 0; i < n; ) {
        if (i + 1 < n && syms[i] === left && syms[i + 1] === right) {
          syms[w++] = id
          i += 2
        } else syms[w++] = syms[i++]!
      }
      n = w
    }
    return syms.slice(0, n)
  }

  private tokenString(id: number): string {
    const special = this.specials.find((s) => s.id === id)
    return special !== undefined ? special.content : bytesToTokenString(this.tokens[id]!)
  }

  private renderJSON(): string {
    const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true }
    const addedTokens = [...this.specials]
      .sort((a, b) => a.id - b.id)
      .map((s) => ({
        id: s.id,
        content: s.content,
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: true,
      }))
    const vocab = this.tokens.map((_, id) => `      ${JSON.stringify(this.tokenString(id))}: ${id}`).join(",\n")
    const merges = this.merges
      .map((m) => `      ${JSON.stringify([this.tokenString(m.left), this.tokenString(m.right)])}`)
      .join(",\n")
    const field = (name: string, value: unknown): string => `  ${JSON.stringify(name)}: ${JSON.stringify(value)}`
    return [
      "{",
      [
        field("version", "1.0"),
        field("truncation", null),
        field("padding", null),
        field("added_tokens", addedTokens),
        field("normalizer", null),
        field("pre_tokenizer", byteLevel),
        field("post_processor", { ...byteLevel, trim_offsets: false }),
        field("decoder", byteLevel),
        [
          `  "model": {`,
          `    "type": "BPE",`,
          `    "dropout": null,`,
          `    "unk_token": null,`,
          `    "continuing_subword_prefix": null,`,
          `    "end_of_word_suffix": null,`,
          `    "fuse_unk": false,`,
          `    "byte_fallback": false,`,
          `    "ignore_merges": false,`,
          `    "vocab": {\n${vocab}\n    },`,
          `    "merges": [\n${merges}\n    ]`,
          `  }`,
        ].join("\n"),
      ].join(",\n"),
      "}",
      "",
    ].join("\n")
  }
}

const fail = (what: string): never => {
  throw new Error(`invalid tokenizer.json: ${what}`)
}

const isRecord = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x)

/** Reads the subset of tokenizer.json this tokenizer implements, rejecting anything else. */
const parseTokenizerJSON = (text: string): TokenizerSpec => {
  let root: unknown
  try {
    root = JSON.parse(text)
  } catch (e) {
    return fail(`not JSON (${(e as Error).message})`)
  }
  if (!isRecord(root)) return fail("top level is not an object")
  const model = root["model"]
  if (!isRecord(model) || model["type"] !== "BPE") return fail(`model.type must be "BPE"`)
  const pre = root["pre_tokenizer"]
  if (!isRecord(pre) || pre["type"] !== "ByteLevel" || pre["add_prefix_space"] === true || pre["use_regex"] === false) {
    return fail("pre_tokenizer must be ByteLevel with add_prefix_space false and use_regex true")
  }
  if (root["normalizer"] !== null && root["normalizer"] !== undefined) return fail("normalizers are not supported")
  const decoder = root["decoder"]
  if (!isRecord(decoder) || decoder["type"] !== "ByteLevel") return fail(`decoder.type must be "ByteLevel"`)
  const vocab = model["vocab"]
  if (!isRecord(vocab)) return fail("model.vocab is not an object")

  const added = root["added_tokens"] ?? []
  if (!Array.isArray(added)) return fail("added_tokens is not an array")
  const specials: SpecialToken[] = added.map((t, i) => {
    if (!isRecord(t) || typeof t["content"] !== "string" || !Number.isInteger(t["id"])) {
      return fail(`added_tokens[${i}] needs a string content and an integer id`)
    }
    return { content: t["content"], id: t["id"] as number }
  })
  const specialById = new Map(specials.map((s) => [s.id, s.content]))

  const entries = Object.entries(vocab)
  const tokens: Uint8Array[] = new Array(entries.length)
  const idOf = new Map<string, number>()
  for (const [token, id] of entries) {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id >= entries.length) {
      return fail(`vocab id of ${JSON.stringify(token)} must be an integer in [0, ${entries.length})`)
    }
    if (tokens[id] !== undefined) return fail(`vocab id ${id} is used twice`)
    const special = specialById.get(id)
    const bytes = special !== undefined ? new TextEncoder().encode(special) : tokenStringToBytes(token)
    if (bytes === undefined) return fail(`vocab token ${JSON.stringify(token)} is not in the ByteLevel alphabet`)
    tokens[id] = bytes
    idOf.set(token, id)
  }
  for (const s of specials) if (tokens[s.id] === undefined) return fail(`added token id ${s.id} is not in the vocab`)

  const rawMerges = model["merges"]
  if (!Array.isArray(rawMerges)) return fail("model.merges is not an array")
  const merges = rawMerges.map((m: unknown, rank): Merge => {
    const pair = typeof m === "string" ? m.split(" ") : m
    if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== "string" || typeof pair[1] !== "string") {
      return fail(`merges[${rank}] is not a pair of tokens`)
    }
    const [a, b] = pair as [string, string]
    const left = idOf.get(a)
    const right = idOf.get(b)
    const id = idOf.get(a + b)
    if (left === undefined || right === undefined || id === undefined) {
      return fail(`merges[${rank}] (${JSON.stringify(a)}, ${JSON.stringify(b)}) uses tokens missing from the vocab`)
    }
    return { left, right, id }
  })
  return { tokens, specials, merges }
}
