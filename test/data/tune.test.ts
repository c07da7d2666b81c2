import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { NodeServices } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { describe, expect, it } from "vitest"
import { prepareData } from "../../src/data/prepare.js"
import { tinystories } from "../../src/experiment/define.js"
import { ProgressSink } from "../../src/io/progress.js"
import { loadRunData } from "../../src/orchestration/data.js"

/**
 * `tune`: the last stories of train.txt held out of training, of the tokenizer's training and
 * of the token caches, as the text the run evaluates on instead of valid.txt.
 */
const HELD = ["A frog jumped into the pond with a splash.", "The owl hooted at the silver moon."]
// The owl's story is also earlier in train.txt, as TinyStories repeats stories: that copy is held out too.
const TRAIN = ["Once upon a time, a cat sat.", HELD[1]!, "The dog ran to the park. Café!", "A bird sang a song.", "Tom had a red ball.", ...HELD]
const KEPT = ["Once upon a time, a cat sat.", "The dog ran to the park. Café!", "A bird sang a song.", "Tom had a red ball."]
const EXTRA = ["Lily found a shiny stone.", HELD[0]!]
const VALID = ["The cat ran.", "A song for the dog."]

const write = (dir: string, name: string, stories: readonly string[]) => writeFileSync(join(dir, name), stories.map((s) => `${s}\n<|endoftext|>\n`).join(""))
const dataset = (train: readonly string[] = TRAIN): { dir: string; cache: string } => {
  const dir = mkdtempSync(join(tmpdir(), "tune-data-"))
  write(dir, "train.txt", train)
  write(dir, "train-extra.txt", EXTRA)
  write(dir, "valid.txt", VALID)
  return { dir, cache: mkdtempSync(join(tmpdir(), "tune-cache-")) }
}
const quiet = Layer.succeed(ProgressSink, { isTTY: false, columns: () => 80, write: () => {}, now: () => performance.now() })
const prepare = (o: { dir: string; cache: string; tune?: number; extra?: boolean }) =>
  prepareData({ tokenizer: { vocabSize: 300 }, dir: o.dir, cacheDir: o.cache, progress: false, ...(o.tune === undefined ? {} : { tune: o.tune }), ...(o.extra ? { extra: true } : {}) }).pipe(
    Effect.provide(Layer.merge(NodeServices.layer, quiet)),
  )
const joined = (stories: readonly string[]) => stories.map((s) => `${s}<|endoftext|>`).join("")

describe("prepareData with tune", () => {
  it("holds the last stories of train.txt, and every copy of them, out of the training text and encodes them as the tune split", async () => {
    const { dir, cache } = dataset()
    const data = await Effect.runPromise(prepare({ dir, cache, tune: 2 }))
    const text = data.tokenizer.decode(data.train.tokens)
    expect(text).toBe(joined(KEPT))
    for (const story of HELD) expect(text).not.toContain(story)
    expect(data.train.stories).toBe(KEPT.length)
    expect(data.train.textBytes).toBe(Buffer.byteLength(KEPT.join("")))
    expect(data.tune!.stories).toBe(2)
    expect(data.tokenizer.decode(data.tune!.tokens)).toBe(joined(HELD))
    expect(data.tune!.bytesPerToken).toBe(Buffer.byteLength(HELD.join("")) / data.tune!.tokens.length)
    // valid.txt is still prepared (for reporting), untouched.
    expect(data.tokenizer.decode(data.valid.tokens)).toBe(joined(VALID))
  })

  it("trains the tokenizer without the held-out stories: the same one as on a train.txt that never had them", async () => {
    const tuned = await Effect.runPromise(prepare({ ...dataset(), tune: 2 }))
    const without = await Effect.runPromise(prepare(dataset(KEPT)))
    const full = await Effect.runPromise(prepare(dataset()))
    expect(tuned.tokenizer.toJSON()).toBe(without.tokenizer.toJSON())
    // The check could fail: the held-out text does change the tokenizer.
    expect(full.tokenizer.toJSON()).not.toBe(without.tokenizer.toJSON())
  })

  it("with extra: holds out the same train.txt stories and drops their copies from train-extra.txt", async () => {
    const { dir, cache } = dataset()
    const data = await Effect.runPromise(prepare({ dir, cache, tune: 2, extra: true }))
    expect(data.tokenizer.decode(data.train.tokens)).toBe(joined([...KEPT, EXTRA[0]!]))
    expect(data.tokenizer.decode(data.tune!.tokens)).toBe(joined(HELD))
  })

  it("keys the tokenizer and token caches by the held-out count, so no two configurations share an entry", async () => {
    const { dir, cache } = dataset()
    const plain = await Effect.runPromise(prepare({ dir, cache }))
    const two = await Effect.runPromise(prepare({ dir, cache, tune: 2 }))
    const one = await Effect.runPromise(prepare({ dir, cache, tune: 1 }))
    expect(new Set([plain.tokenizerPath, two.tokenizerPath, one.tokenizerPath]).size).toBe(3)
    expect(new Set([plain.train.cachePath, two.train.cachePath, one.train.cachePath]).size).toBe(3)
    expect(two.tune!.cachePath).not.toBe(one.tune!.cachePath)
    expect(one.tokenizer.decode(one.tune!.tokens)).toBe(joined([HELD[1]!]))

    const again = await Effect.runPromise(prepare({ dir, cache, tune: 2 }))
    expect(again.train.cached && again.tune!.cached && again.valid.cached).toBe(true)
    expect(again.tokenizerPath).toBe(two.tokenizerPath)
    expect(again.tune!.tokens).toEqual(two.tune!.tokens)
    const plainAgain = await Effect.runPromise(prepare({ dir, cache }))
    expect(plainAgain.train.cached).toBe(true)
    expect(plainAgain.tokenizer.decode(plainAgain.train.tokens)).toBe(joined(TRAIN))
    expect(plainAgain.tune).toBeUndefined()
    // The data hash is the files' identity, the same with or without held-out stories.
    expect(two.dataHash).toBe(plain.dataHash)
  })

  it("refuses a count that leaves no story to train on, naming the field, the file and the range", async () => {
    const { dir, cache } = dataset()
    const e = await Effect.runPromise(Effect.flip(prepare({ dir, cache, tune: TRAIN.length })))
    expect(e._tag).toBe("DataFormatError")
    expect(e.message).toBe(`training.data.tune.stories: ${TRAIN.length} leaves no story to train on: ${join(dir, "train.txt")} holds ${TRAIN.length}; expected fewer than ${TRAIN.length}`)
    // Nothing was trained or cached before the refusal.
    expect(await Effect.runPromise(Effect.flip(prepare({ dir, cache, tune: TRAIN.length + 5 })))).toMatchObject({ _tag: "DataFormatError" })
  })
})

describe("a run's data with tune", () => {
  it("never trains on a held-out story, and evaluates on exactly them", async () => {
    const { dir, cache } = dataset()
    process.env["TINYSTORIES_DIR"] = dir
    process.env["TINYSTORIES_CACHE"] = cache
    try {
      const data = await Effect.runPromise(loadRunData(tinystories({ tokenizer: { bpe: 300 }, tune: { stories: 2 } })).pipe(Effect.provide(Layer.merge(NodeServices.layer, quiet))))
      // A context longer than the whole training text: each window holds all of it.
      const context = 4 * data.tokens.train
      const stream = data.trainStream(1, context, 7)
      for (let i = 0; i < 3; i++) {
        const b = stream.next()
        const window = data.tokenizer.decode(b.tokens.filter((_, t) => t === 0 || b.mask[t - 1] === 1))
        for (const story of KEPT) expect(window).toContain(story)
        for (const story of HELD) expect(window).not.toContain(story)
      }
      const evaluated = [...data.validBatches(1, context, 1 << 20)].map((b) => data.tokenizer.decode(b.tokens.filter((_, t) => t === 0 || b.mask[t - 1] === 1))).join("")
      expect(evaluated).toBe(joined(HELD))
      expect(data.tokens.valid).toBe(HELD.reduce((n, s) => n + data.tokenizer.encode(s).length + 1, 0))
    } finally {
      delete process.env["TINYSTORIES_DIR"]
      delete process.env["TINYSTORIES_CACHE"]
    }
  })
})
