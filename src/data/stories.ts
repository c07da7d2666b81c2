import { open, type FileHandle } from "node:fs/promises"
import { Effect } from "effect"
import { type DataError, DataFileError, DataFormatError, fileError } from "./errors.js"
import { jsonStories } from "./json-stories.js"
import { txtStories } from "./txt-stories.js"

export interface StoryStats {
  readonly stories: number
  /** UTF-8 bytes of the (trimmed) stories. */
  readonly bytes: number
}

/** `.json` → JSON shard, `.txt` → text format, anything else decided by the first byte. */
const formatOf = async (path: string, handle: FileHandle): Promise<"json" | "txt"> => {
  if (path.endsWith(".json")) return "json"
  if (path.endsWith(".txt")) return "txt"
  const head = new Uint8Array(64)
  const { bytesRead } = await handle.read(head, 0, head.length, 0)
  const first = new TextDecoder().decode(head.subarray(0, bytesRead)).trimStart()[0]
  return first === "[" ? "json" : "txt"
}

/**
 * Calls `onStory` for every story of a TinyStories file (either official format), in order,
 * streaming; the file is closed however it ends. Fails with DataFileError or DataFormatError.
 */
export const forEachStory = (
  path: string,
  onStory: (story: string) => void,
): Effect.Effect<StoryStats, DataFileError | DataFormatError> =>
  Effect.acquireUseRelease(
    Effect.tryPromise({ try: () => open(path, "r"), catch: (e) => fileError(path, e) }),
    (handle) =>
      Effect.tryPromise({
        try: async () => {
          let stories = 0
          let bytes = 0
          const format = await formatOf(path, handle)
          const source = format === "json" ? jsonStories(path, handle) : txtStories(path, handle)
          for await (const story of source) {
            stories++
            bytes += Buffer.byteLength(story)
            onStory(story)
          }
          return { stories, bytes }
        },
        catch: (e): DataFileError | DataFormatError =>
          e instanceof DataFormatError || e instanceof DataFileError ? e : fileError(path, e),
      }),
    (handle) => Effect.promise(() => handle.close()),
  )

/** All stories of a file in memory (for the small development files and tests). */
export const readStories = (path: string): Effect.Effect<string[], DataError> =>
  Effect.suspend(() => {
    const out: string[] = []
    return Effect.map(
      forEachStory(path, (s) => out.push(s)),
      () => out,
    )
  })
