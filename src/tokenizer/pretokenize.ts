/**
 * GPT-2 pre-tokenization, exactly the split Hugging Face's ByteLevel pre-tokenizer applies
 * (use_regex: true, add_prefix_space: false); BPE merges never cross these pieces.
 */
export const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu

/** Calls `piece` for each pre-token of `text`, in order. */
export const forEachPiece = (text: string, piece: (s: string) => void): void => {
  const re = new RegExp(GPT2_SPLIT)
  let m: RegExpExecArray | null
  while ((m = re.exec(text)) !== null) piece(m[0])
}

/** Literal matcher for special tokens, longest first so one never shadows a longer one. */
export const specialMatcher = (specials: readonly string[]): RegExp | undefined => {
  if (specials.length === 0) return undefined
  const escaped = [...specials].sort((a, b) => b.length - a.length).map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))
  return new RegExp(escaped.join("|"), "g")
}

/**
 * Splits `text` around occurrences of the special tokens (a `specialMatcher`), which are
 * matched literally and never pre-tokenized or merged.
 */
export const splitSpecial = (
  text: string,
  matcher: RegExp | undefined,
  onText: (s: string) => void,
  onSpecial: (token: string) => void,
): void => {
  if (matcher === undefined) {
    onText(text)
    return
  }
  matcher.lastIndex = 0
  let last = 0
  let m: RegExpExecArray | null
  while ((m = matcher.exec(text)) !== null) {
    if (m.index > last) onText(text.slice(last, m.index))
    onSpecial(m[0])
    last = m.index + m[0].length
  }
  if (last < text.length) onText(text.slice(last))
}
