import type { FileHandle } from "node:fs/promises"
import { DataFormatError } from "./errors.js"
import { invalidUtf8Error } from "./invalid-utf8.js"
import { jsonErrorOffset } from "./json-error-offset.js"

/** Line (1-based) and UTF-8 byte offset of character index `at` in `text`. */
const locate = (text: string, at: number): { line: number; byteOffset: number } => {
  const before = text.slice(0, at)
  let line = 1
  for (let i = before.indexOf("\n"); i >= 0; i = before.indexOf("\n", i + 1)) line++
  return { line, byteOffset: Buffer.byteLength(before) }
}

/**
 * The stories of a TinyStories JSON shard (`data00.json` …): an array of objects with a
 * string `story` field. A shard is parsed whole (each is a few hundred MB at most). Each story
 * is trimmed. Throws DataFormatError naming the file and line/byte offset or item index.
 */
export async function* jsonStories(path: string, handle: FileHandle): AsyncGenerator<string> {
  const bytes = await handle.readFile()
  let text: string
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes)
  } catch {
    throw await invalidUtf8Error(path, handle)
  }
  if (text.trim() === "") throw new DataFormatError({ path, message: `${path}: empty file (no stories)` })
  let items: unknown
  try {
    items = JSON.parse(text)
  } catch (e) {
    const at = jsonErrorOffset(text)
    const { line, byteOffset } = locate(text, at)
    const truncated = at >= text.length ? " (truncated: input ends early)" : ""
    throw new DataFormatError({
      path,
      line,
      byteOffset,
      message: `${path}:${line}: invalid JSON at byte offset ${byteOffset}${truncated}: ${(e as Error).message}`,
    })
  }
  if (!Array.isArray(items)) {
    throw new DataFormatError({ path, line: 1, byteOffset: 0, message: `${path}:1: expected a JSON array of {"story": ...} objects` })
  }
  for (let i = 0; i < items.length; i++) {
    const item: unknown = items[i]
    const story = typeof item === "object" && item !== null ? (item as Record<string, unknown>)["story"] : undefined
    if (typeof story !== "string") {
      throw new DataFormatError({ path, message: `${path}: item ${i} has no string "story" field` })
    }
    const trimmed = story.trim()
    if (trimmed !== "") yield trimmed
  }
}
