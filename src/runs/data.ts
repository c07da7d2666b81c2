import { Effect, type FileSystem, type Path } from "effect"
import { Batcher, type BatchCursor, evalBatches } from "../data/batcher.js"
import type { DataError } from "../data/errors.js"
import { prepareData } from "../data/prepare.js"
import type { TokenArray } from "../data/token-file.js"
import type { ProgressSink } from "../io/progress.js"
import type { Tokenizer } from "../tokenizer/tokenizer.js"
import type { RunData, RunTokenizer } from "../train/run-data.js"
import type { DataConfig } from "../experiment/define.js"

/** The run-facing view of a tokenizer trained for `requested` (Hugging Face counting: merges + seen bytes + specials). */
export const runTokenizer = (t: Tokenizer, requested: number, path?: string): RunTokenizer => ({
  encode: (s) => t.encode(s),
  decode: (ids) => t.decode(ids),
  vocabSize: t.vocabSize,
  eotId: t.eotId,
  hash: t.hash,
  name: `byte-level BPE ${requested} (${t.vocabSize} ids with all 256 bytes)`,
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

/** TinyStories, tokenized with the experiment's BPE (both cached after the first run). */
export const loadRunData = (config: DataConfig): Effect.Effect<RunData, DataError, FileSystem.FileSystem | Path.Path | ProgressSink> =>
  Effect.map(prepareData({ vocabSize: config.tokenizer.bpe, extra: config.extra }), (p) =>
    tokenRunData(runTokenizer(p.tokenizer, config.tokenizer.bpe, p.tokenizerPath), p.train.tokens, p.valid.tokens, { train: p.train.bytesPerToken, valid: p.valid.bytesPerToken }, p.dataHash),
  )
