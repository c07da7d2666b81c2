import { resolve } from "node:path"
import { fileURLToPath } from "node:url"

/** The repository root, found from this module's location (src/io/ → ../..). */
export const repoRoot = (): string => resolve(fileURLToPath(new URL("../..", import.meta.url)))
