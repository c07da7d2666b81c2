import { isAbsolute, join, relative, resolve } from "node:path"
import { repoRoot } from "../io/paths.js"
import { type Experiment, isVariantRecord } from "./define.js"

/**
 * An experiment's run of one variant and seed is `<runs folder>/<experiment>[/<variant>][/seed<S>]`,
 * the variant level only when the experiment has named variants and the seed level only when
 * it has several seeds. Pruning finds its source runs by the same rule.
 */
export const runPath = (base: string, experiment: Experiment | undefined, variant: string, seed: number): string =>
  join(base, ...(experiment !== undefined && isVariantRecord(experiment.models) ? [variant] : []), ...(experiment !== undefined && experiment.seeds.length > 1 ? [`seed${seed}`] : []))

/** A run directory as a spec.json records it: relative to the repository when inside it. */
export const recordedDir = (dir: string): string => {
  const r = relative(repoRoot(), dir)
  return r.startsWith("..") || isAbsolute(r) ? dir : r
}

export const resolveRecordedDir = (dir: string): string => resolve(repoRoot(), dir)
