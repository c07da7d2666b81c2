import { readFile, stat } from "node:fs/promises"
import { basename, join } from "node:path"
import { Effect, type FileSystem, type Path } from "effect"
import { writeFileAtomic } from "../io/atomic-write.js"
import { progressBar, type ProgressSink } from "../io/progress.js"
import { BpeTrainer } from "../tokenizer/trainer.js"
import type { TextTokenizer } from "../tokenizer/text-tokenizer.js"
import { END_OF_TEXT, Tokenizer } from "../tokenizer/tokenizer.js"
import { type DataError, DataFormatError, TokenizerConfigError, writeError } from "./errors.js"
import { type DatasetFiles, resolveDataset } from "./dataset.js"
import { sha256File, sha256Text } from "./hash.js"
import { cacheDir } from "./paths.js"
import { type Holdout, holdOut, trainingFilter } from "./holdout.js"
import { forEachStory } from "./stories.js"
import { readTokenFile, type TokenArray, tokenArrayFor, type TokenFile, writeTokenFile } from "./token-file.js"

export interface PrepareOptions {
  /**
   * A byte-level BPE of this Hugging Face-style vocabulary size (see `TrainOptions.vocabSize`),
   * trained here, or a given tokenizer of any kind (an imported model's) and the file it came from.
   */
  readonly tokenizer: { readonly vocabSize: number } | { readonly given: TextTokenizer; readonly path: string }
  /** Also train on the V2/GPT-4 text. */
  readonly extra?: boolean
  /** Hold this many training stories out of training (and of the tokenizer's training) as a tuning text (src/data/holdout.ts). */
  readonly tune?: number
  /** Explicit data directory; else `TINYSTORIES_DIR`, the shared copy, the download cache. */
  readonly dir?: string
  /** Cache root; else `TINYSTORIES_CACHE`, else `<repo>/.cache`. */
  readonly cacheDir?: string
  /** Progress lines on stderr (default true). */
  readonly progress?: boolean
}

export interface PreparedSplit extends TokenFile {
  /** UTF-8 bytes of story text per token: bits per byte = loss_nats / ln 2 / bytesPerToken. */
  readonly bytesPerToken: number
  readonly cachePath: string
  /** True when the tokens came from the cache rather than being encoded now. */
  readonly cached: boolean
}

export interface PreparedData {
  readonly dataset: DatasetFiles
  /** Content hash of the files read (train, then valid): a run's data identity, recorded in the ledger. */
  readonly dataHash: string
  readonly tokenizer: TextTokenizer
  readonly tokenizerPath: string
  readonly train: PreparedSplit
  readonly valid: PreparedSplit
  /** The held-out training stories, when `tune` asks for them. */
  readonly tune?: PreparedSplit
}

/** Bump when training or encoding changes, so stale cache entries are never reused. */
const CACHE_VERSION = "bpe-1"

const exists = (path: string): Promise<boolean> =>
  stat(path).then(
    () => true,
    () => false,
  )

/**
 * Content sha256 of each file, combined in order. Content (not size+mtime+path) so that a
 * copied or re-downloaded file reuses its cache and an edited one never does; hashing runs at
 * ~0.5 GB/s, seconds for the 2 GB file, small next to tokenising it.
 */
const filesKey = (paths: readonly string[]): Effect.Effect<string, DataError> =>
  Effect.map(Effect.forEach(paths, sha256File), (hashes) => sha256Text(hashes.join("\n")))

const dataHashOf = (trainKey: string, validKey: string): string => sha256Text(`${trainKey}\n${validKey}`)

/** The data hash a run with these options would record, without tokenising anything. */
export const currentDataHash = (options: { readonly extra?: boolean; readonly dir?: string }): Effect.Effect<string, DataError> =>
  Effect.gen(function* () {
    const dataset = yield* resolveDataset(options)
    return dataHashOf(yield* filesKey(dataset.train), yield* filesKey([dataset.valid]))
  })

/**
 * Runs `pass`, one read of `file` that calls `advance` for each story, under a progress bar over
 * the file's bytes when `progress` is on.
 */
const withFileProgress = <A, E>(
  label: string,
  file: string,
  progress: boolean,
  pass: (advance: (story: string) => void) => Effect.Effect<A, E>,
): Effect.Effect<A, E, ProgressSink> =>
  progress
    ? Effect.scoped(
        Effect.gen(function* () {
          const { size } = yield* Effect.promise(() => stat(file))
          const bar = yield* progressBar({ label: `${label} ${basename(file)}`, total: size, bytes: true })
          let done = 0
          // Characters plus the separator line approximate the file offset, enough for a progress bar.
          const result = yield* pass((story) => bar.set({ current: Math.min(size, (done += story.length + 15)) }))
          bar.set({ current: size })
          return result
        }),
      )
    : pass(() => {})

const trainTokenizer = (
  files: readonly string[],
  holdout: Holdout | undefined,
  vocabSize: number,
  progress: boolean,
): Effect.Effect<Tokenizer, DataError, ProgressSink> =>
  Effect.gen(function* () {
    const trainer = yield* Effect.try({
      try: () => new BpeTrainer({ vocabSize }),
      catch: (e) => new TokenizerConfigError({ message: (e as Error).message }),
    })
    const filter = trainingFilter(holdout)
    for (const [i, file] of files.entries()) {
      const keep = filter(i)
      yield* withFileProgress("counting words in", file, progress, (advance) =>
        forEachStory(file, (story) => {
          if (keep(story)) trainer.add(story)
          advance(story)
        }),
      )
    }
    return trainer.finish()
  })

/** Stories encoded one at a time, each followed by the tokenizer's separator (`<|endoftext|>`, llama2.c's BOS), into one token stream. */
const tokenStream = (tokenizer: TextTokenizer) => {
  let tokens: TokenArray = tokenArrayFor(tokenizer.vocabSize, 1 << 20)
  let length = 0
  let stories = 0
  let textBytes = 0
  return {
    add: (story: string): void => {
      const ids = tokenizer.encode(story)
      if (length + ids.length + 1 > tokens.length) {
        const grown = tokenArrayFor(tokenizer.vocabSize, Math.max(2 * tokens.length, length + ids.length + 1))
        grown.set(tokens.subarray(0, length))
        tokens = grown
      }
      tokens.set(ids, length)
      length += ids.length
      tokens[length++] = tokenizer.eotId
      stories++
      textBytes += Buffer.byteLength(story)
    },
    finish: (): TokenFile => ({ tokens: tokens.subarray(0, length), stories, textBytes }),
  }
}

/** Encodes every story of `files` (but the held-out ones) into one token stream. */
const encodeFiles = (
  tokenizer: TextTokenizer,
  files: readonly string[],
  holdout: Holdout | undefined,
  progress: boolean,
): Effect.Effect<TokenFile, DataError, ProgressSink> =>
  Effect.gen(function* () {
    const stream = tokenStream(tokenizer)
    const filter = trainingFilter(holdout)
    for (const [i, file] of files.entries()) {
      const keep = filter(i)
      yield* withFileProgress("tokenising", file, progress, (advance) =>
        forEachStory(file, (story) => {
          if (keep(story)) stream.add(story)
          advance(story)
        }),
      )
    }
    return stream.finish()
  })

const split = (file: TokenFile, cachePath: string, cached: boolean): PreparedSplit => ({
  ...file,
  bytesPerToken: file.textBytes / file.tokens.length,
  cachePath,
  cached,
})

/**
 * The BPE of this vocabulary size trained on the train files (without held-out stories), from
 * the cache (keyed by the files' content, the held-out count and the size) or trained now and cached.
 */
const trainedTokenizer = (cache: string, trainFiles: readonly string[], holdout: Holdout | undefined, trainKey: string, vocabSize: number, progress: boolean) =>
  Effect.gen(function* () {
    const tokKey = sha256Text(JSON.stringify([CACHE_VERSION, vocabSize, [END_OF_TEXT], trainKey]))
    const tokenizerPath = join(cache, "tokenizers", `bpe-${vocabSize}-${tokKey.slice(0, 16)}.json`)
    if (yield* Effect.promise(() => exists(tokenizerPath))) {
      const text = yield* Effect.promise(() => readFile(tokenizerPath, "utf8"))
      const tokenizer = yield* Effect.try({
        try: () => Tokenizer.fromJSON(text),
        catch: (e) => new DataFormatError({ path: tokenizerPath, message: `${tokenizerPath}: ${(e as Error).message}` }),
      })
      return { tokenizer, tokenizerPath }
    }
    const tokenizer = yield* trainTokenizer(trainFiles, holdout, vocabSize, progress)
    yield* writeFileAtomic(tokenizerPath, tokenizer.toJSON(), { makeDirectory: true }).pipe(Effect.mapError(writeError))
    return { tokenizer, tokenizerPath }
  })

/**
 * The one entry point of the data path: finds the data, takes the given tokenizer or trains
 * one, encodes both splits (or loads them, keyed by the files' content and the tokenizer's hash,
 * so each tokenizer has its own token files) and reports bytes per token, which makes bits per
 * byte comparable across tokenizers. With `tune`, the held-out stories are a third split, and
 * the training text, its tokenizer and their cache keys leave them out. Cache files are written
 * atomically, so concurrent runs are safe.
 */
export const prepareData = (
  options: PrepareOptions,
): Effect.Effect<PreparedData, DataError, FileSystem.FileSystem | Path.Path | ProgressSink> =>
  Effect.gen(function* () {
    const progress = options.progress ?? true
    const dataset = yield* resolveDataset(options)
    const cache = cacheDir(options.cacheDir)
    const filesTrainKey = yield* filesKey(dataset.train)
    const validKey = yield* filesKey([dataset.valid])
    // Read before any long work, so that a count that leaves nothing to train on fails first.
    const tune = options.tune
    const first = dataset.train[0]!
    const holdout = tune === undefined ? undefined : yield* withFileProgress("holding out stories of", first, progress, (advance) => holdOut(first, tune, advance))
    // Without held-out stories the keys are the files' alone, so existing cache entries still serve.
    const trainKey = tune === undefined ? filesTrainKey : sha256Text(JSON.stringify([filesTrainKey, { tune }]))

    const chosen = options.tokenizer
    const { tokenizer, tokenizerPath } =
      "given" in chosen ? { tokenizer: chosen.given, tokenizerPath: chosen.path } : yield* trainedTokenizer(cache, dataset.train, holdout, trainKey, chosen.vocabSize, progress)

    const load = (
      name: string,
      key: string,
      encode: Effect.Effect<TokenFile, DataError, ProgressSink>,
    ): Effect.Effect<PreparedSplit, DataError, FileSystem.FileSystem | Path.Path | ProgressSink> =>
      Effect.gen(function* () {
        const id = sha256Text(JSON.stringify([CACHE_VERSION, key, tokenizer.hash])).slice(0, 16)
        const path = join(cache, "tokens", `${name}-${id}.bin`)
        if (yield* Effect.promise(() => exists(path))) return split(yield* readTokenFile(path), path, true)
        const file = yield* encode
        yield* writeTokenFile(path, file)
        return split(file, path, false)
      })
    const train = yield* load("train", trainKey, encodeFiles(tokenizer, dataset.train, holdout, progress))
    const valid = yield* load("valid", validKey, encodeFiles(tokenizer, [dataset.valid], undefined, progress))
    const tuneSplit =
      holdout === undefined
        ? undefined
        : yield* load(
            "tune",
            trainKey,
            Effect.sync(() => {
              const stream = tokenStream(tokenizer)
              for (const story of holdout.stories) stream.add(story)
              return stream.finish()
            }),
          )
    return { dataset, dataHash: dataHashOf(filesTrainKey, validKey), tokenizer, tokenizerPath, train, valid, ...(tuneSplit === undefined ? {} : { tune: tuneSplit }) }
  })
