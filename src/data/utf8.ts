/**
 * Incremental strict UTF-8 validator, used to locate the first invalid byte once the fast
 * TextDecoder has reported that one exists (TextDecoder does not say where).
 */
export class Utf8Validator {
  /** Absolute offset of the next byte to be pushed. */
  private offset = 0
  private need = 0
  private lower = 0x80
  private upper = 0xbf
  private seqStart = 0

  /** Returns the absolute offset of the first invalid byte in `bytes`, or -1. */
  push(bytes: Uint8Array): number {
    for (let i = 0; i < bytes.length; i++, this.offset++) {
      const b = bytes[i]!
      if (this.need > 0) {
        if (b < this.lower || b > this.upper) return this.seqStart
        this.lower = 0x80
        this.upper = 0xbf
        this.need--
        continue
      }
      this.seqStart = this.offset
      if (b < 0x80) continue
      if (b >= 0xc2 && b <= 0xdf) this.need = 1
      else if (b >= 0xe0 && b <= 0xef) {
        this.need = 2
        if (b === 0xe0) this.lower = 0xa0
        if (b === 0xed) this.upper = 0x9f
      } else if (b >= 0xf0 && b <= 0xf4) {
        this.need = 3
        if (b === 0xf0) this.lower = 0x90
        if (b === 0xf4) this.upper = 0x8f
      } else return this.offset
    }
    return -1
  }

  /** At end of input: the offset of a truncated final sequence, or -1. */
  end(): number {
    return this.need > 0 ? this.seqStart : -1
  }
}
