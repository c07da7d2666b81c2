import { readdirSync, mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { NodeServices } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { describe, expect, it } from "vitest"
import { prepareData } from "../../src/data/prepare.js"
import { readStories } from "../../src/data/stories.js"
import { ProgressSink } from "../../src/io/progress.js"
import { SentencePieceTokenizer } from "../../src/tokenizer/sentencepiece.js"

const TRAIN = ["Once upon a time, a cat sat.", "The dog ran to the park. Café!", "A bird sang a song."]
const VALID = ["The cat ran.", "A song for the dog. ☀"]
const write = (dir: string, name: string, stories: string[]) =>
  writeFileSync(join(dir, name), stories.map((s) => `${s}\n<|endoftext|>\n`).join(""))

const tinyDataset = (): { dir: string; cache: string } => {
  const dir = mkdtempSync(join(tmpdir(), "prepare-data-"))
  write(dir, "train.txt", TRAIN)
  write(dir, "valid.txt", VALID)
  return { dir, cache: mkdtempSync(join(tmpdir(), "prepare-cache-")) }
}
const captured: string[] = []
const capture = Layer.succeed(ProgressSink, { isTTY: false, columns: () => 80, write: (s) => void captured.push(s), now: () => performance.now() })
const prepare = (o: { dir?: string; cache: string; vocabSize: number; progress?: boolean }) =>
  prepareData({ tokenizer: { vocabSize: o.vocabSize }, cacheDir: o.cache, progress: o.progress ?? false, ...(o.dir !== undefined ? { dir: o.dir } : {}) }).pipe(
    Effect.provide(Layer.merge(NodeServices.layer, capture)),
  )

describe("prepareData", () => {
  it("encodes each split with <|endoftext|> after every story and reports bytes per token", async () => {
    const { dir, cache } = tinyDataset()
    const data = await Effect.runPromise(prepare({ dir, cache, vocabSize: 300 }))
    const { tokenizer, train, valid } = data
    expect(train.tokens).toBeInstanceOf(Uint16Array)
    expect(tokenizer.decode(train.tokens)).toBe(TRAIN.map((s) => `${s}<|endoftext|>`).join(""))
    expect(tokenizer.decode(valid.tokens)).toBe(VALID.map((s) => `${s}<|endoftext|>`).join(""))
    expect(train.tokens.filter((t) => t === tokenizer.eotId)).toHaveLength(3)
    // "The cat ran." is 12 bytes; "A song for the dog. ☀" is 20 + 3 (☀ is 3 bytes in UTF-8).
    expect(valid.textBytes).toBe(35)
    expect(valid.stories).toBe(2)
    expect(valid.bytesPerToken).toBe(35 / valid.tokens.length)
    expect(train.cached).toBe(false)
  })

  it("reuses the cached tokenizer and tokens, and re-keys when the data changes", async () => {
    const { dir, cache } = tinyDataset()
    const first = await Effect.runPromise(prepare({ dir, cache, vocabSize: 300 }))
    const again = await Effect.runPromise(prepare({ dir, cache, vocabSize: 300 }))
    expect(again.train.cached && again.valid.cached).toBe(true)
    expect(again.tokenizer.toJSON()).toBe(first.tokenizer.toJSON())
    expect(again.train.tokens).toEqual(first.train.tokens)
    expect(again.valid.tokens).toEqual(first.valid.tokens)
    expect(again.train.bytesPerToken).toBe(first.train.bytesPerToken)
    expect(readdirSync(join(cache, "tokens")).filter((f) => f.includes(".tmp-"))).toEqual([])

    write(dir, "train.txt", [...TRAIN, "One more story."])
    const changed = await Effect.runPromise(prepare({ dir, cache, vocabSize: 300 }))
    expect(changed.tokenizerPath).not.toBe(first.tokenizerPath)
    expect(changed.train.cached).toBe(false)
    expect(readdirSync(join(cache, "tokenizers"))).toHaveLength(2)
  })

  it("tokenises with a given tokenizer of another kind into token files of its own, with bytes per token of the same text", async () => {
    const { dir, cache } = tinyDataset()
    const bpe = await Effect.runPromise(prepare({ dir, cache, vocabSize: 300 }))
    const utf8 = new TextEncoder()
    const pieces = [..."<unk>,<s>,</s>".split(","), ...Array.from({ length: 256 }, (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`), " ", "a", "t", " a", " t"].map((p) => utf8.encode(p))
    const given = new SentencePieceTokenizer({ pieces, scores: pieces.map((_, i) => -i), maxTokenLength: 6 })
    const sp = await Effect.runPromise(
      prepareData({ tokenizer: { given, path: "given.json" }, dir, cacheDir: cache, progress: false }).pipe(Effect.provide(Layer.merge(NodeServices.layer, capture))),
    )
    expect(sp.tokenizer).toBe(given)
    expect(sp.tokenizerPath).toBe("given.json")
    expect(sp.valid.cachePath).not.toBe(bpe.valid.cachePath)
    expect(readdirSync(join(cache, "tokens"))).toHaveLength(4)
    // Each story is followed by the separator, BOS (1) here, and starts with the dummy-prefix space, which decoding drops after BOS.
    expect(sp.valid.tokens.filter((t) => t === 1)).toHaveLength(2)
    expect(given.decode(sp.valid.tokens)).toBe(` ${VALID[0]}<s>${VALID[1]}<s>`)
    expect(sp.valid.textBytes).toBe(bpe.valid.textBytes)
    expect(sp.valid.bytesPerToken).toBe(35 / sp.valid.tokens.length)
  })

  it("reports progress in bytes per file, and creates the cache directories", async () => {
    const { dir } = tinyDataset()
    const cache = join(mkdtempSync(join(tmpdir(), "prepare-cache-")), "new", "cache")
    captured.length = 0
    await Effect.runPromise(prepare({ dir, cache, vocabSize: 300, progress: true }))
    // Non-TTY lines at each 10% step; each file ends on its exact size.
    expect(captured.every((line) => /^(counting words in|tokenising) (train|valid)\.txt .* \S*B\/s ETA \S+\n$/.test(line))).toBe(true)
    expect(captured.filter((line) => line.includes(" 100.0% ")).map((line) => line.replace(/ \S+ \S*B\/s ETA \S+\n$/, ""))).toEqual([
      "counting words in train.txt 100.0% 123 B/123 B",
      "tokenising train.txt 100.0% 123 B/123 B",
      "tokenising valid.txt 100.0% 65 B/65 B",
    ])
    expect(readdirSync(cache).sort()).toEqual(["tokenizers", "tokens"])
  })

  it("names a corrupt cache file, and rejects a vocab size below 256", async () => {
    const { dir, cache } = tinyDataset()
    const first = await Effect.runPromise(prepare({ dir, cache, vocabSize: 300 }))
    writeFileSync(first.valid.cachePath, Buffer.from("TSTOKENS"))
    const e = await Effect.runPromise(Effect.flip(prepare({ dir, cache, vocabSize: 300 })))
    expect(e.message).toBe(`${first.valid.cachePath}: not a token file (bad header)`)
    const small = await Effect.runPromise(Effect.flip(prepare({ dir, cache, vocabSize: 255 })))
    expect(small._tag).toBe("TokenizerConfigError")
    expect(small.message).toMatch(/vocabSize must be an integer in \[256, .*got 255/)
  })

  it("on the development data: valid bytes/token within 2% of Hugging Face's 2.67 at vocab 512", async () => {
    const cache = mkdtempSync(join(tmpdir(), "prepare-cache-"))
    const data = await Effect.runPromise(prepare({ cache, vocabSize: 512 }))
    expect(Math.abs(data.valid.bytesPerToken - 2.67) / 2.67).toBeLessThan(0.02)
    const stories = await Effect.runPromise(readStories(data.dataset.valid))
    expect(data.tokenizer.decode(data.valid.tokens)).toBe(stories.map((s) => `${s}<|endoftext|>`).join(""))
    expect(data.train.tokens.buffer).not.toBe(data.valid.tokens.buffer)
  })
})
