import { join, relative, resolve } from "node:path"
import { repoRoot } from "../io/paths.js"
import { type Experiment, isVariantRecord } from "./define.js"
import { isInside } from "./names.js"

/**
 * An experiment's run of one variant and seed is `<runs folder>/<experiment>[/<variant>][/seed<S>]`,
 * the variant level only when the experiment has named variants and the seed level only when
 * it has several seeds or the seed is not its one (`--seed`), so no two runs share a directory.
 * Pruning finds its source runs by the same rule. The names are checked where they are decoded
 * (names.ts), and the directory is checked again to lie inside `base`.
 */
export const runPath = (base: string, experiment: Experiment | undefined, variant: string, seed: number): string => {
  const dir = join(
    base,
    ...(experiment !== undefined && isVariantRecord(experiment.models) ? [variant] : []),
    ...(experiment !== undefined && (experiment.seeds.length > 1 || !experiment.seeds.includes(seed)) ? [`seed${seed}`] : []),
  )
  if (!isInside(base, dir)) throw new Error(`the run directory ${dir} of variant ${JSON.stringify(variant)} lies outside ${base}`)
  return dir
}

/** A run directory as a spec.json records it: relative to the repository when inside it. */
export const recordedDir = (dir: string): string => (isInside(repoRoot(), dir) ? relative(repoRoot(), dir) : dir)

export const resolveRecordedDir = (dir: string): string => resolve(repoRoot(), dir)
