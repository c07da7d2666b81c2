import { NO_MERGE, SP_BOS, SP_FIRST_BYTE, SentencePieceTokenizer } from "./sentencepiece.js"

/**
 * A Hugging Face Llama tokenizer.json (transformers' conversion of a SentencePiece BPE: model
 * BPE with byte_fallback, "▁" for the space) read as the SentencePiece kind, so it encodes as
 * run.c does from the same vocabulary's tokenizer.bin. The file has ranked merges and no scores;
 * the conversion lists, for every piece, each split into two pieces, ordered by the piece's
 * score, so a piece's score here is minus the rank (from 1) of its first merge, and a piece no merge
 * makes is never merged into (run.c takes only scores above NO_MERGE). What run.c's merging
 * would not reproduce is refused with its field.
 *
 * Two places where Hugging Face's `tokenizers` differs from SentencePiece and run.c, which the
 * lab follows as the model was trained on them: the Metaspace pre-tokenizer adds no dummy
 * prefix to a text that already starts with a space, and added tokens (`<s>`) written in the
 * text are not read as their ids.
 */
const SPACE = "▁"

const isRecord = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x)
const absent = (x: unknown) => x === undefined || x === null

const fail = (field: string, what: string): never => {
  throw new Error(`invalid tokenizer.json: ${field}: ${what}`)
}

/** Sequence[Prepend("▁"), Replace(" ", "▁")] with no pre-tokenizer, or Metaspace without splitting and no normalizer. */
const checkSpaces = (root: Record<string, unknown>): void => {
  const normalizer = root["normalizer"]
  const pre = root["pre_tokenizer"]
  const expected = `the lab reads Llama's normalizer Sequence[Prepend("${SPACE}"), Replace(" ", "${SPACE}")] or its Metaspace pre-tokenizer (split false)`
  if (!absent(normalizer)) {
    const steps = isRecord(normalizer) && normalizer["type"] === "Sequence" && Array.isArray(normalizer["normalizers"]) ? (normalizer["normalizers"] as unknown[]) : [normalizer]
    const [prepend, replace] = steps as [Record<string, unknown> | undefined, Record<string, unknown> | undefined]
    const pattern = replace?.["pattern"]
    const llama =
      steps.length === 2 &&
      prepend?.["type"] === "Prepend" &&
      prepend["prepend"] === SPACE &&
      replace?.["type"] === "Replace" &&
      isRecord(pattern) &&
      pattern["String"] === " " &&
      replace["content"] === SPACE
    if (!llama) fail("normalizer", `${JSON.stringify(normalizer)}; ${expected}`)
    if (!absent(pre)) fail("pre_tokenizer", `${JSON.stringify(pre)} after the normalizer; ${expected}`)
    return
  }
  if (!isRecord(pre)) return fail("pre_tokenizer", `${JSON.stringify(pre)} and no normalizer; ${expected}`)
  if (pre["type"] !== "Metaspace") fail("pre_tokenizer.type", `${JSON.stringify(pre["type"])}; ${expected}`)
  if (pre["replacement"] !== SPACE) fail("pre_tokenizer.replacement", `${JSON.stringify(pre["replacement"])}; expected "${SPACE}"`)
  // Splitting at each "▁" would keep pieces from spanning words, which run.c's merging does not.
  if (pre["split"] !== false) fail("pre_tokenizer.split", `${JSON.stringify(pre["split"])}; the lab merges across words (split false)`)
  // One section of text (no splitting), so "first" and "always" both prepend once.
  const scheme = pre["prepend_scheme"] ?? (pre["add_prefix_space"] === true ? "always" : "never")
  if (scheme !== "first" && scheme !== "always") fail("pre_tokenizer.prepend_scheme", `${JSON.stringify(scheme)}; SentencePiece's dummy prefix is "first"`)
}

const DECODERS = new Set(["Replace", "ByteFallback", "Fuse", "Strip", "Metaspace"])

/** Llama's decoders (▁ to a space, <0xNN> to its byte, the dummy prefix stripped), which the kind's decode computes. */
const checkDecoder = (decoder: unknown): void => {
  if (absent(decoder)) return
  const steps = isRecord(decoder) && decoder["type"] === "Sequence" && Array.isArray(decoder["decoders"]) ? (decoder["decoders"] as unknown[]) : [decoder]
  steps.forEach((d, i) => {
    const type = isRecord(d) ? d["type"] : undefined
    if (typeof type !== "string" || !DECODERS.has(type)) fail(steps.length > 1 ? `decoder.decoders[${i}].type` : "decoder.type", `${JSON.stringify(type)}; the lab decodes as ${[...DECODERS].join(", ")}`)
  })
}

/** The merges as [left, right]: strings "a b" (older files) or pairs. */
const mergePairs = (raw: unknown): Array<readonly [string, string]> => {
  if (!Array.isArray(raw)) return fail("model.merges", "not an array")
  return raw.map((m: unknown, i) => {
    const pair = typeof m === "string" ? m.split(" ") : m
    if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== "string" || typeof pair[1] !== "string") return fail(`model.merges[${i}]`, `${JSON.stringify(m)}; expected "left right" or [left, right]`)
    return [pair[0], pair[1]] as const
  })
}

export const fromLlamaTokenizerJSON = (root: Record<string, unknown>): SentencePieceTokenizer => {
  const model = root["model"]
  if (!isRecord(model)) return fail("model", "not an object")
  if (model["type"] !== "BPE") fail("model.type", `${JSON.stringify(model["type"])}; the lab reads "BPE" (Llama's, with byte_fallback, or the byte-level BPE)`)
  if (model["byte_fallback"] !== true) fail("model.byte_fallback", `${JSON.stringify(model["byte_fallback"])}; Llama's BPE falls back to <0xNN> bytes (true)`)
  if (!absent(model["dropout"])) fail("model.dropout", `${JSON.stringify(model["dropout"])}; the lab encodes deterministically (null)`)
  for (const field of ["continuing_subword_prefix", "end_of_word_suffix"]) if (!absent(model[field]) && model[field] !== "") fail(`model.${field}`, `${JSON.stringify(model[field])}; expected null`)
  if (model["ignore_merges"] === true) fail("model.ignore_merges", "true; run.c merges every text (false)")
  checkSpaces(root)
  checkDecoder(root["decoder"])

  const vocab = model["vocab"]
  if (!isRecord(vocab)) return fail("model.vocab", "not an object")
  const entries = Object.entries(vocab)
  // A Map, so a piece such as "constructor" is not found on Object.prototype.
  const idOf = new Map<string, unknown>(entries)
  const names: string[] = new Array(entries.length)
  for (const [piece, id] of entries) {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id >= entries.length) fail("model.vocab", `${JSON.stringify(piece)} has id ${JSON.stringify(id)}; expected an integer in [0, ${entries.length})`)
    if (names[id as number] !== undefined) fail("model.vocab", `id ${id} is used twice`)
    // The normalizer makes every space "▁", so a piece with a space could never be reached.
    if (piece.includes(" ")) fail("model.vocab", `the piece ${JSON.stringify(piece)} holds a space, which the normalizer makes "${SPACE}"`)
    names[id as number] = piece
  }
  if (idOf.get("<s>") !== SP_BOS) fail("model.vocab", `"<s>" has id ${JSON.stringify(idOf.get("<s>"))}; the SentencePiece kind starts each story with BOS at id ${SP_BOS}, as run.c`)
  for (let b = 0; b < 256; b++) {
    const piece = `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`
    if (idOf.get(piece) !== SP_FIRST_BYTE + b) fail("model.vocab", `${piece} has id ${JSON.stringify(idOf.get(piece))}; run.c's byte fallback takes byte ${b} as id ${SP_FIRST_BYTE + b}`)
  }
  const added = root["added_tokens"] ?? []
  if (!Array.isArray(added)) return fail("added_tokens", "not an array")
  added.forEach((t: unknown, i) => {
    if (!isRecord(t) || typeof t["content"] !== "string" || idOf.get(t["content"]) !== t["id"]) fail(`added_tokens[${i}]`, `${JSON.stringify(t)}; every added token must be model.vocab's piece at its id`)
  })

  const merges = mergePairs(model["merges"])
  const rankOf = new Map<string, number>()
  const firstRank = new Map<string, number>()
  merges.forEach(([left, right], rank) => {
    const piece = left + right
    if (!idOf.has(left) || !idOf.has(right) || !idOf.has(piece)) fail(`model.merges[${rank}]`, `${JSON.stringify([left, right])}: ${JSON.stringify(piece)} and both its halves must be in model.vocab`)
    rankOf.set(`${left} ${right}`, rank)
    if (!firstRank.has(piece)) firstRank.set(piece, rank)
  })
  // run.c merges any two adjacent pieces that concatenate to a piece it can merge into, so every such split must be listed.
  for (const piece of firstRank.keys()) {
    const chars = Array.from(piece)
    for (let i = 1; i < chars.length; i++) {
      const left = chars.slice(0, i).join("")
      const right = chars.slice(i).join("")
      if (idOf.has(left) && idOf.has(right) && !rankOf.has(`${left} ${right}`))
        fail("model.merges", `no merge of ${JSON.stringify(left)} and ${JSON.stringify(right)}, which make the piece ${JSON.stringify(piece)}; SentencePiece (and run.c) merges every pair of pieces that make one`)
    }
  }
  const utf8 = new TextEncoder()
  // As llama2.c's tokenizer.py writes tokenizer.bin: "▁" as a space, the longest piece's bytes as the header.
  const pieces = names.map((p) => utf8.encode(p.replaceAll(SPACE, " ")))
  return new SentencePieceTokenizer({
    pieces,
    scores: names.map((p) => {
      const rank = firstRank.get(p)
      return rank === undefined ? NO_MERGE : -(rank + 1)
    }),
    maxTokenLength: Math.max(...pieces.map((p) => p.length)),
  })
}

/** llama2.c's tokenizer.py writes BOS and EOS as "\n<s>\n" and "\n</s>\n" for printing; the SentencePiece model names them so. */
const SPECIAL_NAMES: Readonly<Record<number, Readonly<Record<string, string>>>> = { 1: { "\n<s>\n": "<s>" }, 2: { "\n</s>\n": "</s>" } }

/**
 * The SentencePiece kind as a Hugging Face Llama tokenizer.json, as transformers converts a
 * SentencePiece model (the older normalizer form, which always prepends the dummy prefix as
 * SentencePiece does): every split of a piece that merging can make, the pieces by score
 * (highest first). Reading it back encodes alike; the scores themselves are not kept, the
 * file has none. What the format cannot hold is a problem.
 */
export const toLlamaTokenizerJSON = (sp: SentencePieceTokenizer): { readonly json: string } | { readonly problem: string } => {
  const strict = new TextDecoder("utf-8", { fatal: true })
  const names: string[] = []
  for (let id = 0; id < sp.vocabSize; id++) {
    let text: string
    try {
      text = strict.decode(sp.pieces[id])
    } catch {
      return { problem: `tokenizer: piece ${id} is not UTF-8; a tokenizer.json piece is text` }
    }
    if (text.includes(SPACE)) return { problem: `tokenizer: piece ${id} ${JSON.stringify(text)} holds "${SPACE}", which a Llama tokenizer.json uses for the space` }
    names.push(SPECIAL_NAMES[id]?.[text] ?? text.replaceAll(" ", SPACE))
  }
  const vocab = new Map<string, number>()
  for (const [id, name] of names.entries()) {
    if (vocab.has(name)) return { problem: `tokenizer: pieces ${vocab.get(name)} and ${id} are both ${JSON.stringify(name)}; a tokenizer.json vocab holds each once` }
    vocab.set(name, id)
  }
  if (names[SP_BOS] !== "<s>") return { problem: `tokenizer: piece ${SP_BOS} is ${JSON.stringify(names[SP_BOS])}; a Llama tokenizer.json has BOS "<s>" there` }
  for (let b = 0; b < 256; b++) {
    const piece = `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`
    if (names[SP_FIRST_BYTE + b] !== piece) return { problem: `tokenizer: piece ${SP_FIRST_BYTE + b} is ${JSON.stringify(names[SP_FIRST_BYTE + b])}; byte fallback needs ${piece} there` }
  }
  const merges: Array<readonly [string, string]> = []
  const byScore = names.map((_, id) => id).filter((id) => sp.scores[id]! > NO_MERGE)
  byScore.sort((a, b) => sp.scores[b]! - sp.scores[a]! || a - b)
  for (const id of byScore) {
    const chars = Array.from(names[id]!)
    const splits: Array<readonly [string, string]> = []
    for (let i = 1; i < chars.length; i++) {
      const left = chars.slice(0, i).join("")
      const right = chars.slice(i).join("")
      if (vocab.has(left) && vocab.has(right)) splits.push([left, right])
    }
    merges.push(...splits.sort((x, y) => vocab.get(x[0])! - vocab.get(y[0])! || vocab.get(x[1])! - vocab.get(y[1])!))
  }
  const special = (id: number) => ({ id, content: names[id], single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })
  const root = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [0, 1, 2].map(special),
    normalizer: { type: "Sequence", normalizers: [{ type: "Prepend", prepend: SPACE }, { type: "Replace", pattern: { String: " " }, content: SPACE }] },
    pre_tokenizer: null,
    // As llama2.c trained: every story starts with BOS.
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "<s>", type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }],
      special_tokens: { "<s>": { id: "<s>", ids: [SP_BOS], tokens: ["<s>"] } },
    },
    decoder: {
      type: "Sequence",
      decoders: [{ type: "Replace", pattern: { String: SPACE }, content: " " }, { type: "ByteFallback" }, { type: "Fuse" }, { type: "Strip", content: " ", start: 1, stop: 0 }],
    },
    model: { type: "BPE", dropout: null, unk_token: names[0], continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab: Object.fromEntries(vocab), merges },
  }
  return { json: JSON.stringify(root, null, 2) + "\n" }
}
