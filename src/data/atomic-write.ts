import { mkdir, rename, rm, writeFile } from "node:fs/promises"
import { dirname } from "node:path"
import { Effect } from "effect"
import { type DataFileError, fileError } from "./errors.js"

/**
 * Writes `data` to a temporary file beside `path` and renames it over `path`, so a reader
 * (or a concurrent run) sees either nothing or the whole file, never a partial one.
 */
export const writeFileAtomic = (
  path: string,
  data: string | readonly Uint8Array[],
): Effect.Effect<void, DataFileError> =>
  Effect.tryPromise({
    try: async () => {
      await mkdir(dirname(path), { recursive: true })
      const tmp = `${path}.tmp-${process.pid}-${Date.now()}`
      try {
        await writeFile(tmp, data)
        await rename(tmp, path)
      } finally {
        await rm(tmp, { force: true })
      }
    },
    catch: (e) => fileError(path, e),
  })
