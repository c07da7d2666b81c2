import { Effect, FileSystem, Path } from "effect"
import { Batcher, type BatchCursor, evalBatches } from "../data/batcher.js"
import { type DataError, DataFormatError } from "../data/errors.js"
import { prepareData } from "../data/prepare.js"
import type { TokenArray } from "../data/token-file.js"
import type { ProgressSink } from "../io/progress.js"
import { readTokenizer } from "../tokenizer/registry.js"
import type { TextTokenizer } from "../tokenizer/text-tokenizer.js"
import type { RunData, RunTokenizer } from "../train/run-data.js"
import type { DataConfig } from "../experiment/define.js"
import { runDirOf } from "../experiment/run-ref.js"

/**
 * The run-facing view of a tokenizer: one trained for `requested` (Hugging Face counting:
 * merges + seen bytes + specials), or, without `requested`, one read from a run.
 */
export const runTokenizer = (t: TextTokenizer, requested: number | undefined, path?: string): RunTokenizer => ({
  encode: (s) => t.encode(s),
  decode: (ids) => t.decode(ids),
  vocabSize: t.vocabSize,
  eotId: t.eotId,
  promptStart: t.promptStart,
  hash: t.hash,
  name: requested !== undefined ? `byte-level BPE ${requested} (${t.vocabSize} ids with all 256 bytes)` : t.label,
  json: () => t.toJSON(),
  ...(path !== undefined ? { path } : {}),
})

/** Training and validation streams over token arrays, with the batcher's resumable cursor. */
export const tokenRunData = (
  tokenizer: RunTokenizer,
  train: TokenArray,
  valid: TokenArray,
  bytesPerToken: RunData["bytesPerToken"],
  dataHash: string,
): RunData => ({
  tokenizer,
  dataHash,
  bytesPerToken,
  tokens: { train: train.length, valid: valid.length },
  trainStream: (batch, context, seed, cursor) => {
    let batcher: Batcher
    if (cursor === undefined) batcher = Batcher.create(train, { batch, context, seed, padId: tokenizer.eotId })
    else {
      const c = cursor as BatchCursor
      if (c.batch !== batch || c.context !== context || c.seed !== seed) {
        throw new Error(`the saved data cursor is for batch ${c.batch}, context ${c.context}, seed ${c.seed}, not ${batch}, ${context}, ${seed}`)
      }
      batcher = Batcher.restore(train, c, tokenizer.eotId)
    }
    return { next: () => batcher.next(), cursor: () => batcher.cursor }
  },
  validBatches: (batch, context, tokens) => evalBatches(valid, { batch, context, maxTokens: tokens, padId: tokenizer.eotId }),
})

/** The tokenizer.json of the run a data config names, read with its kind. */
const tokenizerOfRun = (dir: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const file = path.join(runDirOf({ run: dir }), "tokenizer.json")
    const fail = (problem: string) => new DataFormatError({ path: file, message: `training.data.tokenizer.run: ${file}: ${problem}` })
    const text = yield* fs.readFileString(file).pipe(Effect.mapError((e) => fail(`cannot read it (${e.message})`)))
    const given = yield* Effect.try({ try: () => readTokenizer(text), catch: (e) => fail((e as Error).message) })
    return { given, path: file }
  })

/**
 * TinyStories, tokenized with the experiment's tokenizer (the tokens cached after the first run,
 * by the tokenizer's hash), evaluated on valid.txt or, with `tune`, on the held-out training stories.
 */
export const loadRunData = (config: DataConfig): Effect.Effect<RunData, DataError, FileSystem.FileSystem | Path.Path | ProgressSink> =>
  Effect.gen(function* () {
    const chosen = config.tokenizer
    const tokenizer = "bpe" in chosen ? { vocabSize: chosen.bpe } : yield* tokenizerOfRun(chosen.run)
    const p = yield* prepareData({ tokenizer, extra: config.extra, ...(config.tune === undefined ? {} : { tune: config.tune.stories }) })
    const requested = "bpe" in chosen ? chosen.bpe : undefined
    const evalSplit = p.tune ?? p.valid
    return tokenRunData(runTokenizer(p.tokenizer, requested, p.tokenizerPath), p.train.tokens, evalSplit.tokens, { train: p.train.bytesPerToken, valid: evalSplit.bytesPerToken }, p.dataHash)
  })
