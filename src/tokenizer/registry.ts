import { fromLlamaTokenizerJSON } from "./llama-json.js"
import { SentencePieceTokenizer } from "./sentencepiece.js"
import type { TextTokenizer, TokenizerKind } from "./text-tokenizer.js"
import { Tokenizer } from "./tokenizer.js"

/**
 * The tokenizer kinds by the tag of their tokenizer.json: what each is, and how its file is
 * read. A file with a top-level `kind` is that kind; a Hugging Face tokenizer.json (no `kind`,
 * as every run wrote before kinds) is the byte-level BPE, which keeps that format so the
 * Hugging Face export can hand it on unchanged, when its pre-tokenizer is ByteLevel, and
 * otherwise a Llama one (SentencePiece's conversion), read as the SentencePiece kind.
 */
export const tokenizerKinds = {
  bpe: { description: "byte-level BPE (GPT-2 pre-tokenization, ranked merges; Hugging Face tokenizer.json)", read: (text: string, _root: Record<string, unknown>): TextTokenizer => Tokenizer.fromJSON(text) },
  sentencepiece: { description: "SentencePiece-style BPE (scored pieces, byte fallback, dummy-prefix space; llama2.c tokenizer.bin, Hugging Face Llama tokenizer.json)", read: (_text: string, root: Record<string, unknown>): TextTokenizer => SentencePieceTokenizer.fromJSON(root) },
} as const satisfies Record<TokenizerKind, { readonly description: string; readonly read: (text: string, root: Record<string, unknown>) => TextTokenizer }>

const isKind = (kind: unknown): kind is TokenizerKind => typeof kind === "string" && Object.hasOwn(tokenizerKinds, kind)

/** A run's tokenizer.json, whatever its kind; a problem is thrown as an Error saying what. */
export const readTokenizer = (text: string): TextTokenizer => {
  let root: unknown
  try {
    root = JSON.parse(text)
  } catch (e) {
    throw new Error(`invalid tokenizer.json: not JSON (${(e as Error).message})`)
  }
  if (typeof root !== "object" || root === null || Array.isArray(root)) throw new Error("invalid tokenizer.json: top level is not an object")
  const record = root as Record<string, unknown>
  if (record["kind"] === undefined && (record["pre_tokenizer"] as { type?: unknown } | null | undefined)?.type !== "ByteLevel") return fromLlamaTokenizerJSON(record)
  const kind = record["kind"] ?? "bpe"
  if (!isKind(kind)) throw new Error(`invalid tokenizer.json: kind ${JSON.stringify(kind)} is not one of ${Object.keys(tokenizerKinds).join(", ")}`)
  return tokenizerKinds[kind].read(text, record)
}
