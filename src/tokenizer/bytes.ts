/**
 * GPT-2's byte ↔ printable-character mapping, the alphabet of Hugging Face's ByteLevel
 * pre-tokenizer: printable Latin-1 bytes map to themselves, the other 68 bytes to U+0100….
 * tokenizer.json stores every token as a string of these characters.
 */
const buildByteToChar = (): string[] => {
  const chars: string[] = new Array(256)
  let extra = 0
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff)
    chars[b] = String.fromCharCode(printable ? b : 256 + extra++)
  }
  return chars
}

export const BYTE_TO_CHAR: readonly string[] = buildByteToChar()

const CHAR_TO_BYTE: ReadonlyMap<string, number> = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]))

export const bytesToTokenString = (bytes: Uint8Array): string => {
  let s = ""
  for (let i = 0; i < bytes.length; i++) s += BYTE_TO_CHAR[bytes[i]!]
  return s
}

/** Inverse of `bytesToTokenString`; undefined when a character is outside the alphabet. */
export const tokenStringToBytes = (token: string): Uint8Array | undefined => {
  const out = new Uint8Array(token.length)
  for (let i = 0; i < token.length; i++) {
    const b = CHAR_TO_BYTE.get(token[i]!)
    if (b === undefined) return undefined
    out[i] = b
  }
  return out
}
