/**
 * Crash-safe file replacement: readers see either the old file or the complete new one,
 * never a torn write. The bytes go to a temporary file in the same directory (so the
 * rename stays on one file system), are fsynced, renamed over the target, and the
 * directory is fsynced so the rename itself survives a power loss.
 */
import { Data, Effect, FileSystem, Path } from "effect"
import type { PlatformError } from "effect/PlatformError"
import { ioReason } from "../errors/io-error.js"
import { makeDirectory } from "./make-directory.js"

export class AtomicWriteError extends Data.TaggedError("AtomicWriteError")<{
  readonly path: string
  readonly reason: string
}> {
  override get message(): string {
    return `cannot write ${this.path}: ${this.reason}`
  }
}

/** Distinguishes temporary files of concurrent writes in one process; the pid separates processes. */
let tempCounter = 0

/** Flushes a directory's entries (renames, creations) to disk. */
export const fsyncDirectory = (dir: string): Effect.Effect<void, PlatformError, FileSystem.FileSystem> =>
  Effect.scoped(
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const handle = yield* fs.open(dir, { flag: "r" })
      yield* handle.sync
    }),
  )

export interface WriteOptions {
  /** Create the parent directory (and its parents) when missing. */
  readonly makeDirectory?: boolean
}

/**
 * Writes `data` to `filePath` atomically; on failure the previous file, if any, is untouched.
 * An array of chunks is written one after another, so large arrays need not be joined first.
 */
export const writeFileAtomic = (
  filePath: string,
  data: string | Uint8Array | readonly Uint8Array[],
  options: WriteOptions = {},
): Effect.Effect<void, AtomicWriteError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const chunks = typeof data === "string" ? [new TextEncoder().encode(data)] : data instanceof Uint8Array ? [data] : data
    const temp = `${filePath}.tmp-${process.pid}-${tempCounter++}`
    const write = Effect.gen(function* () {
      if (options.makeDirectory === true) yield* makeDirectory(path.dirname(filePath))
      yield* Effect.scoped(
        Effect.gen(function* () {
          const handle = yield* fs.open(temp, { flag: "wx" })
          for (const chunk of chunks) yield* handle.writeAll(chunk)
          yield* handle.sync
        }),
      )
      yield* fs.rename(temp, filePath)
      yield* fsyncDirectory(path.dirname(filePath))
    })
    yield* write.pipe(
      Effect.onError(() => fs.remove(temp, { force: true }).pipe(Effect.ignore)),
      Effect.mapError((e) => new AtomicWriteError({ path: filePath, reason: ioReason(e) })),
    )
  })
