/** The tokenizer kinds, each a module of src/tokenizer/ registered in registry.ts. */
export type TokenizerKind = "bpe" | "sentencepiece"

/**
 * What every tokenizer kind computes: text to ids and back, and the one file a run keeps of it
 * (tokenizer.json), whose sha256 keys the token cache and identifies the vocabulary in results.
 */
export interface TextTokenizer {
  readonly kind: TokenizerKind
  readonly vocabSize: number
  /** The id that separates stories in the token stream and ends a sampled story. */
  readonly eotId: number
  /** The ids a prompt follows when sampling: where a story starts in the kind's own training data (llama2.c's BOS), or none. */
  readonly promptStart: readonly number[]
  /** e.g. "byte-level BPE, 4097 ids". */
  readonly label: string
  encode(text: string): Uint32Array
  decode(ids: ArrayLike<number>): string
  /** sha256 (hex) of `toJSON()`. */
  readonly hash: string
  /** The run's tokenizer.json: byte-stable, read back by `readTokenizer`. */
  toJSON(): string
}
