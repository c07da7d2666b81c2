import { stat } from "node:fs/promises"
import { join } from "node:path"
import { Effect } from "effect"
import { DataFileError } from "./errors.js"
import { downloadDir, sharedDataDir } from "./paths.js"

/** The file names of one directory layout: the development copy, or the official downloads. */
interface Layout {
  readonly train: string
  readonly extra: string
  readonly valid: string
}

const DEV_LAYOUT: Layout = { train: "train.txt", extra: "train-extra.txt", valid: "valid.txt" }
/** `extra` is V2 (GPT-4 only) text, which overlaps V1's GPT-4 stories; off unless asked for. */
export const OFFICIAL_LAYOUT: Layout = {
  train: "TinyStories-train.txt",
  extra: "TinyStoriesV2-GPT4-train.txt",
  valid: "TinyStories-valid.txt",
}

export interface DatasetFiles {
  readonly dir: string
  /** Where `dir` came from. */
  readonly source: "explicit" | "env" | "shared" | "cache"
  readonly train: readonly string[]
  readonly valid: string
}

export interface DatasetOptions {
  /** Explicit data directory (a CLI flag); beats `TINYSTORIES_DIR`. */
  readonly dir?: string
  /** Also train on the V2/GPT-4 file (`train-extra.txt` / `TinyStoriesV2-GPT4-train.txt`). */
  readonly extra?: boolean
  /** Cache root override (else `TINYSTORIES_CACHE`, else `<repo>/.cache`). */
  readonly cacheDir?: string
}

const isFile = (path: string): Promise<boolean> =>
  stat(path).then(
    (s) => s.isFile(),
    () => false,
  )

/** The files of `dir` in whichever layout it holds, or undefined if neither is complete. */
const filesIn = async (dir: string, extra: boolean): Promise<{ train: string[]; valid: string } | undefined> => {
  for (const layout of [DEV_LAYOUT, OFFICIAL_LAYOUT]) {
    const train = [join(dir, layout.train), ...(extra ? [join(dir, layout.extra)] : [])]
    const valid = join(dir, layout.valid)
    const present = await Promise.all([...train, valid].map(isFile))
    if (present.every((p) => p)) return { train, valid }
  }
  return undefined
}

const describe = (dir: string, extra: boolean): string => {
  const names = (l: Layout) => [l.train, ...(extra ? [l.extra] : []), l.valid].join(", ")
  return `${dir} holds neither {${names(DEV_LAYOUT)}} nor {${names(OFFICIAL_LAYOUT)}}`
}

/**
 * Finds the TinyStories files: an explicit `dir`, else `TINYSTORIES_DIR`, else the shared
 * development copy (../shared/data/tinystories), else the download cache. An explicit or
 * environment directory must hold the files; it never silently falls back.
 */
export const resolveDataset = (options: DatasetOptions = {}): Effect.Effect<DatasetFiles, DataFileError> =>
  Effect.tryPromise({
    try: async (): Promise<DatasetFiles> => {
      const extra = options.extra ?? false
      const env = process.env["TINYSTORIES_DIR"]
      const pinned = options.dir !== undefined ? ("explicit" as const) : env !== undefined && env !== "" ? ("env" as const) : undefined
      if (pinned !== undefined) {
        const dir = pinned === "explicit" ? options.dir! : env!
        const files = await filesIn(dir, extra)
        if (files === undefined) throw new DataFileError({ path: dir, message: describe(dir, extra) })
        return { dir, source: pinned, ...files }
      }
      const candidates = [
        { dir: sharedDataDir(), source: "shared" as const },
        { dir: downloadDir(options.cacheDir), source: "cache" as const },
      ]
      for (const c of candidates) {
        const files = await filesIn(c.dir, extra)
        if (files !== undefined) return { ...c, ...files }
      }
      throw new DataFileError({
        path: candidates[1]!.dir,
        message: `no TinyStories data found: ${candidates.map((c) => describe(c.dir, extra)).join("; ")}. Run \`npm run data -- download\` or set TINYSTORIES_DIR`,
      })
    },
    catch: (e) => (e instanceof DataFileError ? e : new DataFileError({ path: "", message: String(e) })),
  })
