import type { FileHandle } from "node:fs/promises"
import { DataFormatError } from "./errors.js"
import { Utf8Validator } from "./utf8.js"

/**
 * Re-reads a file that TextDecoder rejected to find the first invalid byte, and the line it
 * is on (1-based), for the error message. Only runs on the error path.
 */
export const invalidUtf8Error = async (path: string, handle: FileHandle): Promise<DataFormatError> => {
  const validator = new Utf8Validator()
  const buf = new Uint8Array(1 << 20)
  let position = 0
  let line = 1
  for (;;) {
    const { bytesRead } = await handle.read(buf, 0, buf.length, position)
    const chunk = buf.subarray(0, bytesRead)
    const bad = bytesRead === 0 ? validator.end() : validator.push(chunk)
    const upto = bad < 0 ? bytesRead : bad - position
    for (let i = 0; i < upto; i++) if (chunk[i] === 0x0a) line++
    if (bad >= 0) {
      return new DataFormatError({
        path,
        line,
        byteOffset: bad,
        message: `${path}:${line}: invalid UTF-8 at byte offset ${bad}${bytesRead === 0 ? " (file truncated inside a character)" : ""}`,
      })
    }
    if (bytesRead === 0) {
      return new DataFormatError({ path, message: `${path}: invalid UTF-8 (offset not found)` })
    }
    position += bytesRead
  }
}
