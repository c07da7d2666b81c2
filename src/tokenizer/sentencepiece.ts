import { createHash } from "node:crypto"
import { MAX_VOCAB, pairKey } from "./tokenizer.js"
import type { TextTokenizer } from "./text-tokenizer.js"

/**
 * A SentencePiece-style BPE as llama2.c's run.c computes it from `tokenizer.bin`: a score per
 * piece, no merge list. Encoding prepends the dummy-prefix space, looks each UTF-8 codepoint up
 * as a piece (a codepoint missing from the vocabulary becomes its bytes, id 3 + byte), then
 * merges, while any adjacent pair concatenates to a piece, the pair whose piece scores highest
 * (the leftmost of equals). Decoding maps `<0xNN>` pieces to their byte and drops the leading
 * space of a piece after BOS. Id 1 (BOS) starts every story, so it is the story separator.
 */
export const SP_BOS = 1
/** run.c's byte fallback: byte b is id 3 + b. */
export const SP_FIRST_BYTE = 3
/** run.c's merge loop starts from this score and takes only pairs strictly above it. */
export const NO_MERGE = Math.fround(-1e10)

export interface SentencePieceSpec {
  /** Each piece's bytes by id. */
  readonly pieces: readonly Uint8Array[]
  readonly scores: ArrayLike<number>
  /** The header of tokenizer.bin, kept so the file can be written back as read. */
  readonly maxTokenLength: number
}

const BYTE_PIECE = /^<0x([0-9A-Fa-f]{1,2})/

/** Bytes as a Latin-1 string, so a piece and a concatenation of pieces are Map keys. */
const binary = (bytes: Uint8Array): string => {
  let s = ""
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]!)
  return s
}

/** Max-heap of candidate merges: higher score first, then the leftmost (smaller position). */
class MergeHeap {
  private readonly score: number[] = []
  private readonly pos: number[] = []
  private readonly left: number[] = []
  private readonly right: number[] = []

  get size(): number {
    return this.pos.length
  }

  push(score: number, pos: number, left: number, right: number): void {
    this.score.push(score)
    this.pos.push(pos)
    this.left.push(left)
    this.right.push(right)
    let i = this.pos.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!this.before(i, parent)) break
      this.swap(i, parent)
      i = parent
    }
  }

  /** The best entry as [position, left id, right id], removed from the heap. */
  pop(): [number, number, number] {
    const top: [number, number, number] = [this.pos[0]!, this.left[0]!, this.right[0]!]
    const last = this.pos.length - 1
    this.swap(0, last)
    this.score.pop()
    this.pos.pop()
    this.left.pop()
    this.right.pop()
    let i = 0
    for (;;) {
      const l = 2 * i + 1
      let best = i
      if (l < last && this.before(l, best)) best = l
      if (l + 1 < last && this.before(l + 1, best)) best = l + 1
      if (best === i) break
      this.swap(i, best)
      i = best
    }
    return top
  }

  private before(i: number, j: number): boolean {
    return this.score[i]! > this.score[j]! || (this.score[i] === this.score[j] && this.pos[i]! < this.pos[j]!)
  }

  private swap(i: number, j: number): void {
    for (const a of [this.score, this.pos, this.left, this.right]) {
      const t = a[i]!
      a[i] = a[j]!
      a[j] = t
    }
  }
}

export class SentencePieceTokenizer implements TextTokenizer {
  readonly kind = "sentencepiece"
  readonly vocabSize: number
  readonly eotId = SP_BOS
  /** run.c feeds BOS before the prompt, as every story starts with it in llama2.c's training data. */
  readonly promptStart: readonly number[] = [SP_BOS]
  readonly pieces: readonly Uint8Array[]
  readonly scores: Float32Array
  readonly maxTokenLength: number
  /** Piece (up to a NUL, as run.c's C strings) → the lowest id with it. */
  private readonly ids = new Map<string, number>()
  private readonly keys: readonly string[]
  private readonly pairs = new Map<number, number>()
  private readonly utf8 = new TextEncoder()
  private json: string | undefined
  private digest: string | undefined

  constructor(spec: SentencePieceSpec) {
    this.vocabSize = spec.pieces.length
    if (this.vocabSize > MAX_VOCAB) throw new Error(`vocab size ${this.vocabSize} exceeds the maximum ${MAX_VOCAB}`)
    if (this.vocabSize < SP_FIRST_BYTE + 256) throw new Error(`${this.vocabSize} pieces; the byte fallback needs at least ${SP_FIRST_BYTE + 256} (bytes at ids 3–258)`)
    if (spec.scores.length !== this.vocabSize) throw new Error(`${spec.scores.length} scores for ${this.vocabSize} pieces`)
    this.pieces = spec.pieces
    this.scores = Float32Array.from(spec.scores)
    this.maxTokenLength = spec.maxTokenLength
    this.keys = spec.pieces.map((p) => {
      const nul = p.indexOf(0)
      return binary(nul >= 0 ? p.subarray(0, nul) : p)
    })
    this.keys.forEach((k, id) => {
      if (!this.ids.has(k)) this.ids.set(k, id)
    })
  }

  get label(): string {
    return `SentencePiece BPE (llama2.c tokenizer.bin), ${this.vocabSize} ids`
  }

  encode(text: string): Uint32Array {
    const all = this.utf8.encode(text)
    // run.c reads a C string: it ends at the first NUL.
    const nul = all.indexOf(0)
    const bytes = nul >= 0 ? all.subarray(0, nul) : all
    const out: number[] = []
    if (bytes.length > 0) out.push(this.ids.get(" ") ?? SP_FIRST_BYTE + 0x20)
    let start = 0
    let length = 0
    for (let i = 0; i < bytes.length; i++) {
      if (length === 0 || (bytes[i]! & 0xc0) !== 0x80) {
        start = i
        length = 0
      }
      length++
      if (i + 1 < bytes.length && (bytes[i + 1]! & 0xc0) === 0x80 && length < 4) continue
      const codepoint = bytes.subarray(start, start + length)
      const id = this.ids.get(binary(codepoint))
      if (id !== undefined) out.push(id)
      else for (const b of codepoint) out.push(SP_FIRST_BYTE + b)
      length = 0
    }
    return this.merge(out)
  }

  decode(ids: ArrayLike<number>): string {
    const parts: Uint8Array[] = []
    let prev = -1
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!
      let piece = this.pieces[id]
      if (piece === undefined) throw new Error(`token id ${id} is outside the vocabulary (size ${this.vocabSize})`)
      if (prev === SP_BOS && piece[0] === 0x20) piece = piece.subarray(1)
      const byte = BYTE_PIECE.exec(binary(piece.subarray(0, 5)))
      parts.push(byte ? Uint8Array.of(parseInt(byte[1]!, 16)) : piece)
      prev = id
    }
    return new TextDecoder().decode(Buffer.concat(parts))
  }

  get hash(): string {
    this.digest ??= createHash("sha256").update(this.toJSON()).digest("hex")
    return this.digest
  }

  /** `kind` tags it; a piece that is not UTF-8 is written as hex. */
  toJSON(): string {
    this.json ??= this.renderJSON()
    return this.json
  }

  /** llama2.c's tokenizer.bin, byte for byte as read. */
  toBin(): Uint8Array {
    const out = new Uint8Array(4 + this.pieces.reduce((s, p) => s + 8 + p.length, 0))
    const view = new DataView(out.buffer)
    view.setInt32(0, this.maxTokenLength, true)
    let at = 4
    this.pieces.forEach((p, id) => {
      view.setFloat32(at, this.scores[id]!, true)
      view.setInt32(at + 4, p.length, true)
      out.set(p, at + 8)
      at += 8 + p.length
    })
    return out
  }

  /** Greedy merging of the best-scoring pair, with a heap over a linked list of symbols. */
  private merge(symbols: number[]): Uint32Array {
    const n = symbols.length
    const id = Int32Array.from(symbols)
    const next = new Int32Array(n)
    const prev = new Int32Array(n)
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1
      prev[i] = i - 1
    }
    const heap = new MergeHeap()
    const offer = (pos: number) => {
      const right = next[pos]!
      if (pos < 0 || right < 0) return
      const merged = this.pair(id[pos]!, id[right]!)
      if (merged >= 0 && this.scores[merged]! > NO_MERGE) heap.push(this.scores[merged]!, pos, id[pos]!, id[right]!)
    }
    for (let i = 0; i + 1 < n; i++) offer(i)
    while (heap.size > 0) {
      const [pos, left, right] = heap.pop()
      const r = next[pos]!
      // An entry is stale once either symbol has merged since it was offered.
      if (id[pos] !== left || r < 0 || id[r] !== right) continue
      id[pos] = this.pair(left, right)
      id[r] = -1
      next[pos] = next[r]!
      if (next[r]! >= 0) prev[next[r]!] = pos
      offer(prev[pos]!)
      offer(pos)
    }
    const out: number[] = []
    for (let i = n > 0 ? 0 : -1; i >= 0; i = next[i]!) out.push(id[i]!)
    return Uint32Array.from(out)
  }

  /** The piece two pieces concatenate to, or -1. */
  private pair(left: number, right: number): number {
    const key = pairKey(left, right)
    let merged = this.pairs.get(key)
    if (merged === undefined) {
      merged = this.ids.get(this.keys[left]! + this.keys[right]!) ?? -1
      this.pairs.set(key, merged)
    }
    return merged
  }

  private renderJSON(): string {
    const strict = new TextDecoder("utf-8", { fatal: true })
    const piece = (p: Uint8Array): unknown => {
      try {
        return strict.decode(p)
      } catch {
        return { hex: Buffer.from(p).toString("hex") }
      }
    }
    const lines = this.pieces.map((p, id) => `    ${JSON.stringify([piece(p), this.scores[id]])}`)
    return `{\n  "kind": "sentencepiece",\n  "maxTokenLength": ${this.maxTokenLength},\n  "pieces": [\n${lines.join(",\n")}\n  ]\n}\n`
  }

  /** Reads what `toJSON` writes. */
  static fromJSON(root: Record<string, unknown>): SentencePieceTokenizer {
    const fail = (what: string): never => {
      throw new Error(`invalid sentencepiece tokenizer.json: ${what}`)
    }
    const max = root["maxTokenLength"]
    if (!Number.isInteger(max)) return fail("maxTokenLength must be an integer")
    const raw = root["pieces"]
    if (!Array.isArray(raw)) return fail("pieces must be an array of [piece, score]")
    const pieces: Uint8Array[] = []
    const scores: number[] = []
    raw.forEach((entry: unknown, i) => {
      if (!Array.isArray(entry) || entry.length !== 2 || typeof entry[1] !== "number") return fail(`pieces[${i}] must be [piece, score]`)
      const [p, score] = entry as [unknown, number]
      if (typeof p === "string") pieces.push(new TextEncoder().encode(p))
      else if (typeof p === "object" && p !== null && typeof (p as { hex?: unknown }).hex === "string") pieces.push(Uint8Array.from(Buffer.from((p as { hex: string }).hex, "hex")))
      else return fail(`pieces[${i}][0] must be a string or { "hex": "…" }`)
      scores.push(score)
    })
    return new SentencePieceTokenizer({ pieces, scores, maxTokenLength: max as number })
  }

  /**
   * llama2.c's tokenizer.bin: max_token_length (int32), then per piece its score (float32),
   * length (int32) and bytes. The file does not say how many pieces it holds (run.c takes the
   * model's vocab_size), so `vocabSize` is given and the file must end after that many.
   */
  static fromBin(bytes: Uint8Array, vocabSize: number): SentencePieceTokenizer {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    const fail = (what: string): never => {
      throw new Error(what)
    }
    if (bytes.length < 4) return fail(`${bytes.length} bytes; expected at least the 4-byte max_token_length`)
    const maxTokenLength = view.getInt32(0, true)
    const pieces: Uint8Array[] = []
    const scores = new Float32Array(vocabSize)
    let at = 4
    for (let i = 0; i < vocabSize; i++) {
      if (at + 8 > bytes.length) return fail(`ends at byte ${at}, within piece ${i}; the model's vocab_size is ${vocabSize}`)
      scores[i] = view.getFloat32(at, true)
      const length = view.getInt32(at + 4, true)
      if (length < 0 || at + 8 + length > bytes.length) return fail(`piece ${i} at byte ${at} has length ${length}, past the end of the file (${bytes.length} bytes)`)
      pieces.push(bytes.slice(at + 8, at + 8 + length))
      at += 8 + length
    }
    if (at !== bytes.length) return fail(`${bytes.length - at} bytes left after the model's vocab_size ${vocabSize} pieces (at byte ${at}); the tokenizer is for another model`)
    return new SentencePieceTokenizer({ pieces, scores, maxTokenLength })
  }
}
