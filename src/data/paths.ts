import { join, resolve } from "node:path"
import { repoRoot } from "../io/paths.js"

/** The development copy of TinyStories shared between checkouts. */
export const sharedDataDir = (): string => resolve(repoRoot(), "../shared/data/tinystories")

/** Cache root: `TINYSTORIES_CACHE`, else `<repo>/.cache` (gitignored). */
export const cacheDir = (override?: string): string =>
  resolve(override ?? process.env["TINYSTORIES_CACHE"] ?? join(repoRoot(), ".cache"))

/** Where `npm run data -- download` puts the official files. */
export const downloadDir = (cache?: string): string => join(cacheDir(cache), "tinystories")
