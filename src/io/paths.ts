import { join, resolve } from "node:path"
import { fileURLToPath } from "node:url"

/** The repository root, found from this module's location (src/io/ → ../..). */
export const repoRoot = (): string => resolve(fileURLToPath(new URL("../..", import.meta.url)))

/**
 * The runs folder: `$TINYSTORIES_RUNS`, else `<repo>/runs`. Experiments train into
 * `<runs folder>/<experiment>/…` and finished runs are recorded in `<runs folder>/ledger/`;
 * machines of a sweep share it.
 */
export const runsFolder = (): string => {
  const env = process.env["TINYSTORIES_RUNS"]
  return env !== undefined && env !== "" ? resolve(env) : join(repoRoot(), "runs")
}
