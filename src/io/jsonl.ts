import { Data, Effect, FileSystem, Scope } from "effect"
import { ioReason } from "../errors/io-error.js"

/**
 * JSON-lines files that only grow (metrics.jsonl). An append that fails part-way (a full
 * disk) is cut back to the last whole line; a line torn anyway (the process killed inside a
 * write, a disk that failed the truncation too) is dropped by the reader and reported, so the
 * file never becomes unreadable.
 */
export interface JsonlLine {
  /** 1-based line number in the file. */
  readonly line: number
  readonly text: string
  readonly value: unknown
}

export interface JsonlContent {
  readonly lines: ReadonlyArray<JsonlLine>
  /** Lines that are not JSON (torn writes), by line number. */
  readonly dropped: ReadonlyArray<number>
}

export const parseJsonl = (text: string): JsonlContent => {
  const lines: JsonlLine[] = []
  const dropped: number[] = []
  text.split("\n").forEach((t, i) => {
    if (t.trim() === "") return
    try {
      lines.push({ line: i + 1, text: t, value: JSON.parse(t) as unknown })
    } catch {
      dropped.push(i + 1)
    }
  })
  return { lines, dropped }
}

/** Says which lines a reader dropped, e.g. for a warning; empty when none were. */
export const droppedLines = (file: string, content: JsonlContent): string =>
  content.dropped.length === 0
    ? ""
    : `${file}: dropped ${content.dropped.length === 1 ? "line" : "lines"} ${content.dropped.join(", ")}, not JSON (a write cut short, e.g. by a full disk or a kill)`

export interface JsonlAppender {
  /** Appends one row as a line; on failure the file is cut back to its previous length. */
  readonly append: (row: unknown) => Effect.Effect<void, JsonlError>
}

export class JsonlError extends Data.TaggedError("JsonlError")<{ readonly path: string; readonly reason: string }> {
  override get message(): string {
    return `cannot write ${this.path}: ${this.reason}`
  }
}

/** Opens `path` for appending (created if missing) for the scope. */
export const openJsonl = (path: string): Effect.Effect<JsonlAppender, JsonlError, FileSystem.FileSystem | Scope.Scope> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const fail = (e: unknown) => new JsonlError({ path, reason: ioReason(e) })
    const file = yield* fs.open(path, { flag: "a" }).pipe(Effect.mapError(fail))
    let size = Number((yield* file.stat.pipe(Effect.mapError(fail))).size)
    const encoder = new TextEncoder()
    return {
      append: (row) => {
        const bytes = encoder.encode(JSON.stringify(row) + "\n")
        return file.writeAll(bytes).pipe(
          Effect.tap(() => Effect.sync(() => (size += bytes.length))),
          Effect.catch((e) => fs.truncate(path, size).pipe(Effect.ignore, Effect.andThen(Effect.fail(fail(e))))),
        )
      },
    }
  })
