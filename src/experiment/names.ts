import { isAbsolute, relative, resolve, sep } from "node:path"
import { Schema } from "effect"

/**
 * Experiment, variant and seed names become path components of run directories
 * (`<runs>/<experiment>/<variant>/seed<S>`), so they are checked where they are decoded: one
 * safe alphabet (letters, digits, `_`, `-` and inner `.`), no separators, no `.` or `..`, and
 * not a name the runs folder keeps for itself. Every directory built from them is checked again
 * to stay inside its root.
 */

/** Where `npm run import` puts the runs it makes: `<runs folder>/imports/<name>`. */
export const IMPORTS = "imports"

/** Top-level entries of the runs folder that are not experiments (case-insensitive: macOS). */
const reservedNames: ReadonlyArray<string> = ["ledger", "report", IMPORTS]

const safe = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,98}[A-Za-z0-9_-])?$/

/** Why `name` cannot name an experiment or variant; undefined when it can. */
export const nameProblem = (name: unknown): string | undefined => {
  if (typeof name !== "string") return `expected a name, got ${JSON.stringify(name)}`
  if (!safe.test(name) || name.includes(".."))
    return `${JSON.stringify(name)} cannot name a run directory: expected 1–100 letters, digits, "_", "-" or "." (not first or last, never ".."), no "/" or spaces`
  if (reservedNames.includes(name.toLowerCase())) return `${JSON.stringify(name)} is reserved for the runs folder's own ${name.toLowerCase()} directory; choose another name`
  return undefined
}

export const RunName = Schema.String.check(Schema.makeFilter((s) => nameProblem(s) ?? true))

/**
 * A variant as a run's spec.json records it. A replayed spec.json runs in its own directory (or
 * `--out`), so its variant names no directory and may be a label, as derived runs' are
 * ("layerdrop, blocks 0,2,4"); it still could never be a path.
 */
export const labelProblem = (label: string): string | undefined =>
  label.length === 0 || label.length > 200 || label === "." || label === ".." || /[/\\\u0000-\u001f]/.test(label)
    ? `${JSON.stringify(label)} cannot be a run's variant: expected 1–200 characters without "/", "\\" or control characters, and not "." or ".."`
    : undefined

export const RunLabel = Schema.String.check(Schema.makeFilter((s) => labelProblem(s) ?? true))

/** Seeds are mixed as 32-bit words (src/random/rng.ts) and name `seed<S>` directories. */
const maxSeed = 2 ** 32 - 1
export const Seed = Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: maxSeed }))

export const seedProblem = (seed: unknown): string | undefined =>
  typeof seed === "number" && Number.isSafeInteger(seed) && seed >= 0 && seed <= maxSeed ? undefined : `expected a seed: an integer in [0, ${maxSeed}], got ${JSON.stringify(seed)}`

/** Whether `path` is `root` or lies below it, after resolving `..`. */
export const isInside = (root: string, path: string): boolean => {
  const r = relative(resolve(root), resolve(path))
  return r === "" || (r !== ".." && !r.startsWith(`..${sep}`) && !isAbsolute(r))
}
