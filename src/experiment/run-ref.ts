import { isAbsolute, join } from "node:path"
import { Schema } from "effect"
import { runsFolder } from "../io/paths.js"
import { RunName, Seed } from "./names.js"

/**
 * A finished run that another run reads (a distillation teacher, the run a student starts
 * from): its directory, and optionally the experiment that trains it when the directory holds
 * no finished run. Once a run has started from it, `fingerprint` records which run it was
 * (its spec and weights), so a changed source is noticed on resume and on replay.
 */
export const RunRefSchema = Schema.Struct({
  /** The run directory: inside the runs folder (runs/) unless absolute, so a spec names the same run on every machine. */
  run: Schema.NonEmptyString,
  /** `npm run exp <experiment>` trains it (only the named variant and seed) when it is missing or unfinished. */
  experiment: Schema.optionalKey(Schema.String),
  variant: Schema.optionalKey(RunName),
  seed: Schema.optionalKey(Seed),
  fingerprint: Schema.optionalKey(Schema.String),
})
export type RunRef = typeof RunRefSchema.Type

/** What a run reads another run as: its distillation teacher, the run it starts from, the run it prunes. */
export type SourceRole = "teacher" | "warm-start source" | "pruning source"

/**
 * The run an experiment trains, where `npm run exp` puts it: runs/<experiment>[/<variant>][/seed<S>]
 * (name the variant and seed exactly when the experiment has several), or `dir`. Trained first
 * when it does not exist.
 */
export const runOf = (experiment: string, o: { readonly variant?: string; readonly seed?: number; readonly dir?: string } = {}): RunRef => ({
  run: o.dir ?? [experiment, ...(o.variant !== undefined ? [o.variant] : []), ...(o.seed !== undefined ? [`seed${o.seed}`] : [])].join("/"),
  experiment,
  ...(o.variant !== undefined ? { variant: o.variant } : {}),
  ...(o.seed !== undefined ? { seed: o.seed } : {}),
})

/** A run directory as it is (absolute, or inside runs/): it must hold a finished run, nothing trains it. */
export const runAt = (dir: string): RunRef => ({ run: dir })

/** Where `npm run exp` puts runs, and relative run references point. */
/** The absolute directory of a run reference. */
export const runDirOf = (ref: RunRef): string => (isAbsolute(ref.run) ? ref.run : join(runsFolder(), ref.run))

/** How a referenced run is made, for messages: "experiment base, variant x, seed 2". */
export const recipeOf = (ref: RunRef): string | undefined =>
  ref.experiment === undefined
    ? undefined
    : [`experiment ${ref.experiment}`, ...(ref.variant !== undefined ? [`variant ${ref.variant}`] : []), ...(ref.seed !== undefined ? [`seed ${ref.seed}`] : [])].join(", ")

/** The command that trains a referenced run: "npm run exp base -- --variant x --seed 2". */
export const commandOf = (ref: RunRef): string | undefined => {
  if (ref.experiment === undefined) return undefined
  const flags = [...(ref.variant !== undefined ? ["--variant", ref.variant] : []), ...(ref.seed !== undefined ? ["--seed", String(ref.seed)] : [])]
  return ["npm run exp", ref.experiment, ...(flags.length > 0 ? ["--", ...flags] : [])].join(" ")
}
