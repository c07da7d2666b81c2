import { createHash } from "node:crypto"
import { createReadStream } from "node:fs"
import { Effect } from "effect"
import { type DataFileError, fileError } from "./errors.js"

/** sha256 (hex) of a file's content, streamed. */
export const sha256File = (path: string): Effect.Effect<string, DataFileError> =>
  Effect.tryPromise({
    try: async () => {
      const hash = createHash("sha256")
      for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer)
      return hash.digest("hex")
    },
    catch: (e) => fileError(path, e),
  })

export const sha256Text = (text: string): string => createHash("sha256").update(text).digest("hex")
