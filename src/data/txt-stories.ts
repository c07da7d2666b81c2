import type { FileHandle } from "node:fs/promises"
import { DataFormatError } from "./errors.js"
import { invalidUtf8Error } from "./invalid-utf8.js"

export const SEPARATOR_LINE = "<|endoftext|>"
const CHUNK = 1 << 20

/**
 * Streams the stories of a TinyStories `.txt` file: stories separated by lines that read
 * `<|endoftext|>` (V2 files also have blank lines around them). Each story is trimmed; empty
 * ones are skipped; a last story without a trailing separator is kept. Reads 1 MiB at a time,
 * so the 2 GB official file never sits in memory. Throws DataFormatError naming the file and
 * line (and byte offset for invalid UTF-8).
 */
export async function* txtStories(path: string, handle: FileHandle): AsyncGenerator<string> {
  const decoder = new TextDecoder("utf-8", { fatal: true })
  const buf = new Uint8Array(CHUNK)
  let position = 0
  let carry = ""
  let lineNo = 0
  let lines: string[] = []
  let separators = 0
  let content = false
  const formatError = (line: number, why: string): DataFormatError =>
    new DataFormatError({ path, line, message: `${path}:${line}: ${why}` })

  function* takeLine(line: string): Generator<string> {
    lineNo++
    if (line.includes("\0")) throw formatError(lineNo, "NUL byte: a binary file, not TinyStories .txt")
    if (!content && line.trim() !== "") {
      content = true
      const first = line.trimStart()[0]
      if (first === "[" || first === "{") {
        throw formatError(lineNo, "looks like JSON, expected stories separated by <|endoftext|> lines (use a .json name)")
      }
    }
    if (line.trim() === SEPARATOR_LINE) {
      separators++
      const story = lines.join("\n").trim()
      lines = []
      if (story !== "") yield story
    } else lines.push(line)
  }

  for (;;) {
    const { bytesRead } = await handle.read(buf, 0, CHUNK, position)
    let text: string
    try {
      text = bytesRead === 0 ? decoder.decode() : decoder.decode(buf.subarray(0, bytesRead), { stream: true })
    } catch {
      throw await invalidUtf8Error(path, handle)
    }
    position += bytesRead
    const parts = (carry + text).split("\n")
    carry = parts.pop()!
    for (const line of parts) yield* takeLine(line.endsWith("\r") ? line.slice(0, -1) : line)
    if (bytesRead === 0) break
  }
  if (carry !== "") yield* takeLine(carry)
  if (!content) throw new DataFormatError({ path, message: `${path}: empty file (no stories)` })
  if (separators === 0) {
    throw formatError(1, `no ${SEPARATOR_LINE} separator line in ${lineNo} lines: not a TinyStories .txt file`)
  }
  const last = lines.join("\n").trim()
  if (last !== "") yield last
}
