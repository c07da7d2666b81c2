import { PairHeap } from "./pair-heap.js"
import { forEachPiece, specialMatcher, splitSpecial } from "./pretokenize.js"
import { END_OF_TEXT, MAX_VOCAB, type Merge, PAIR_SHIFT, Tokenizer } from "./tokenizer.js"

export interface TrainOptions {
  /**
   * Hugging Face's `vocab_size`: special tokens + the bytes that occur in the training text +
   * merges. Bytes that never occur are added beyond it (so no input is ever lost), where
   * Hugging Face's trainer leaves them out of its alphabet; `Tokenizer.vocabSize` is the
   * actual size, at most vocabSize + 256 − (bytes seen).
   */
  readonly vocabSize: number
  /** Defaults to [`<|endoftext|>`]; must contain it. */
  readonly specialTokens?: readonly string[]
}

/**
 * Byte-level BPE trainer. `add` counts GPT-2 pre-tokens (special tokens in the text are cut
 * out, never counted); `finish` learns `vocabSize − specials − distinct bytes seen` merges.
 * Vocabulary layout: ids 0–255 are the bytes, then the special tokens, then one id per merge
 * in the order learned. Each step merges the most frequent adjacent pair; ties go to the
 * smaller (left id, right id). Training stops early if no pair is left.
 */
export class BpeTrainer {
  readonly vocabSize: number
  readonly specialTokens: readonly string[]
  private readonly words = new Map<string, number>()
  private readonly specialRe: RegExp | undefined

  constructor(options: TrainOptions) {
    const specials = options.specialTokens ?? [END_OF_TEXT]
    if (!specials.includes(END_OF_TEXT)) throw new Error(`specialTokens must include ${END_OF_TEXT}`)
    if (new Set(specials).size !== specials.length) throw new Error("specialTokens has duplicates")
    if (!Number.isInteger(options.vocabSize) || options.vocabSize < 256 || options.vocabSize > MAX_VOCAB - 256) {
      throw new Error(`vocabSize must be an integer in [256, ${MAX_VOCAB - 256}], got ${options.vocabSize}`)
    }
    this.vocabSize = options.vocabSize
    this.specialTokens = specials
    this.specialRe = specialMatcher(specials)
  }

  add(text: string): void {
    const words = this.words
    splitSpecial(
      text,
      this.specialRe,
      (part) => forEachPiece(part, (piece) => words.set(piece, (words.get(piece) ?? 0) + 1)),
      () => {},
    )
  }

  finish(): Tokenizer {
    const utf8 = new TextEncoder()
    const tokens: Uint8Array[] = []
    for (let b = 0; b < 256; b++) tokens.push(Uint8Array.of(b))
    const specials = this.specialTokens.map((content) => {
      tokens.push(utf8.encode(content))
      return { content, id: tokens.length - 1 }
    })

    const nWords = this.words.size
    const syms: Uint32Array[] = new Array(nWords)
    const freq = new Float64Array(nWords)
    let w = 0
    for (const [word, count] of this.words) {
      syms[w] = Uint32Array.from(utf8.encode(word))
      freq[w++] = count
    }

    const pairCount = new Map<number, number>()
    const pairWords = new Map<number, number[]>()
    for (let i = 0; i < nWords; i++) {
      const s = syms[i]!
      for (let j = 0; j + 1 < s.length; j++) {
        const key = s[j]! * PAIR_SHIFT + s[j + 1]!
        pairCount.set(key, (pairCount.get(key) ?? 0) + freq[i]!)
        const list = pairWords.get(key)
        if (list === undefined) pairWords.set(key, [i])
        else if (list[list.length - 1] !== i) list.push(i)
      }
    }
    const heap = new PairHeap()
    for (const [key, count] of pairCount) heap.push(count, key)

    const seenBytes = new Set<number>()
    for (const s of syms) for (const b of s) seenBytes.add(b)
    const targetSize = 256 + specials.length + Math.max(0, this.vocabSize - specials.length - seenBytes.size)

    const merges: Merge[] = []
    const seen = new Int32Array(nWords).fill(-1)
    while (tokens.length < targetSize && heap.size > 0) {
      const key = heap.peekKey()
      const stale = heap.peekCount()
      heap.pop()
      const count = pairCount.get(key) ?? 0
      if (count !== stale) {
        // Counts only fall for pairs without the new token, so a stale entry is re-queued lazily.
        if (count > 0) heap.push(count, key)
        continue
      }
      if (count <= 0) continue
      const left = Math.floor(key / PAIR_SHIFT)
      const right = key % PAIR_SHIFT
      const id = tokens.length
      const lt = tokens[left]!
      const rt = tokens[right]!
      const merged = new Uint8Array(lt.length + rt.length)
      merged.set(lt)
      merged.set(rt, lt.length)
      tokens.push(merged)
      merges.push({ left, right, id })

      const added = new Set<number>()
      for (const wi of pairWords.get(key)!) {
        if (seen[wi] === id) continue
        seen[wi] = id
        const s = syms[wi]!
        const f = freq[wi]!
        let hit = false
        for (let j = 0; j + 1 < s.length; j++) {
          if (s[j] === left && s[j + 1] === right) {
            hit = true
            break
          }
        }
        if (!hit) continue
        for (let j = 0; j + 1 < s.length; j++) {
          const k = s[j]! * PAIR_SHIFT + s[j + 1]!
          pairCount.set(k, pairCount.get(k)! - f)
        }
        const out = new Uint32Array(s.length)
        let n = 0
        for (let j = 0; j < s.length; ) {
          if (j + 1 < s.length && s[j] === left && s[j + 1] === right) {
            out[n++] = id
            j += 2
          } else out[n++] = s[j++]!
        }
        const next = out.subarray(0, n)
        syms[wi] = next
        for (let j = 0; j + 1 < n; j++) {
          const a = next[j]!
          const b = next[j + 1]!
          const k = a * PAIR_SHIFT + b
          pairCount.set(k, (pairCount.get(k) ?? 0) + f)
          if (a === id || b === id) {
            added.add(k)
            const list = pairWords.get(k)
            if (list === undefined) pairWords.set(k, [wi])
            else if (list[list.length - 1] !== wi) list.push(wi)
          }
        }
      }
      pairWords.delete(key)
      pairCount.delete(key)
      for (const k of added) heap.push(pairCount.get(k)!, k)
    }
    return new Tokenizer({ tokens, specials, merges })
  }
}

/** Trains a byte-level BPE tokenizer on `texts` (e.g. stories, without separators). */
export const trainBpe = (texts: Iterable<string>, options: TrainOptions): Tokenizer => {
  const trainer = new BpeTrainer(options)
  for (const text of texts) trainer.add(text)
  return trainer.finish()
}
