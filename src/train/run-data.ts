import type { HostBatch } from "../eval/evaluate.js"

/**
 * What a training run needs from the data layer, whatever produced it: the TinyStories
 * pipeline for real runs, small synthetic corpora in tests.
 */
export interface RunTokenizer {
  readonly encode: (text: string) => ArrayLike<number>
  readonly decode: (ids: ArrayLike<number>) => string
  readonly vocabSize: number
  /** Id of <|endoftext|>, which ends a sampled story. */
  readonly eotId: number
  /** The ids a prompt follows when sampling (a SentencePiece tokenizer's BOS); none when absent. */
  readonly promptStart?: readonly number[]
  /** Identity of the trained vocabulary, recorded in results. */
  readonly hash: string
  /** e.g. "byte-level BPE 4096". */
  readonly name: string
  /** Hugging Face tokenizer.json, saved with the run so eval and generate need no data. */
  readonly json: () => string
  /** The file it was read from, when there is one (for messages). */
  readonly path?: string
}

/** A resumable stream of training batches; its cursor is plain JSON. */
export interface TrainStream {
  readonly next: () => HostBatch
  readonly cursor: () => unknown
}

export interface RunData {
  readonly tokenizer: RunTokenizer
  /** Identity of the text the tokens came from (a content hash), recorded in the ledger. */
  readonly dataHash: string
  /**
   * Average UTF-8 bytes per token of each split, to report bits per byte. `valid` (here and
   * below) is the text the run evaluates on: valid.txt, or the held-out stories of a data config's `tune`.
   */
  readonly bytesPerToken: { readonly train: number; readonly valid: number }
  readonly tokens: { readonly train: number; readonly valid: number }
  /** Seeded shuffled windows; `cursor` (from a checkpoint) resumes exactly where it left off. */
  readonly trainStream: (batch: number, context: number, seed: number, cursor?: unknown) => TrainStream
  /** The first `tokens` targets of the evaluation text in fixed, non-shuffled windows. */
  readonly validBatches: (batch: number, context: number, tokens: number) => Iterable<HostBatch>
}
