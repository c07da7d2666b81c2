import { Effect, Option } from "effect"
import { Flag } from "effect/cli"
import { backendNames } from "../backend/select.js"
import { WEIGHTS, type Weights } from "../decode/weights.js"
import { UsageError } from "./boundary.js"

/**
 * Numeric flags checked for range (and integrality) as they are parsed, so a bad value is a
 * usage error (exit 2) naming the flag and the allowed range, before any work starts.
 */
export interface Range {
  readonly min?: number
  readonly max?: number
  /** The bound itself is not allowed. */
  readonly minExclusive?: boolean
}

const rangeText = (r: Range): string =>
  r.min !== undefined && r.max !== undefined
    ? `in ${r.minExclusive ? "(" : "["}${r.min}, ${r.max}]`
    : r.min !== undefined
      ? `${r.minExclusive ? ">" : "≥"} ${r.min}`
      : r.max !== undefined
        ? `≤ ${r.max}`
        : "any"

const within = (n: number, r: Range): boolean =>
  (r.min === undefined || (r.minExclusive ? n > r.min : n >= r.min)) && (r.max === undefined || n <= r.max)

/** A number as written on the command line; Number("") would be 0. */
const parse = (text: string, integer: boolean): number | undefined => {
  const n = Number(text)
  return text.trim() !== "" && Number.isFinite(n) && (!integer || Number.isSafeInteger(n)) ? n : undefined
}

const checked = (name: string, integer: boolean, range: Range) =>
  Flag.String(name).pipe(
    Flag.filterMap(
      (text) => {
        const n = parse(text, integer)
        return n !== undefined && within(n, range) ? Option.some(n) : Option.none()
      },
      () => `${integer ? "an integer" : "a number"} ${rangeText(range)}`,
    ),
    Flag.withMetavar(integer ? "integer" : "number"),
  )

export const intFlag = (name: string, range: Range) => checked(name, true, range)
export const numberFlag = (name: string, range: Range) => checked(name, false, range)

/**
 * Distinct numbers in range, comma-separated ("1,0.9,0.5"); each is one row or setting, so an
 * empty list (Number("") would be 0) or a repeated value means nothing and is refused.
 */
export const numberListFlag = (name: string, range: Range) =>
  Flag.String(name).pipe(
    Flag.filterMap(
      (text) => {
        const numbers = text.split(",").map((t) => parse(t, false))
        const valid = numbers.every((n) => n !== undefined && within(n, range)) && new Set(numbers).size === numbers.length
        return valid ? Option.some(numbers as number[]) : Option.none()
      },
      () => `distinct numbers ${rangeText(range)}, comma-separated, like 1,0.9,0.5`,
    ),
    Flag.withMetavar("numbers"),
  )

/** `--backend`: a name the backend selection knows, so another is a usage error listing them. */
export const backendFlag = Flag.Literals("backend", backendNames).pipe(
  Flag.withDescription("force a backend: native, cpu, or tensorflow (when @tensorflow/tfjs-node is installed)"),
  Flag.optional,
)

/** How the native decode program stores the products' weights (src/decode/weights.ts). */
export const weightsFlag = Flag.Literals("weights", WEIGHTS).pipe(
  Flag.withDescription("fp32, or int8 in groups of 32 with a scale each (the native decode program; activations quantised alike)"),
  Flag.withDefault("fp32" as const),
)

/** The refusal of int8 weights where the native decode program does not compute the model. */
export const int8Unavailable = (model: { readonly decodesNatively: () => boolean }, weights: Weights): UsageError | undefined =>
  weights === "int8" && !model.decodesNatively()
    ? new UsageError({ message: "--weights int8 runs on the native decode program only: the native backend (--backend native, TFJS_NATIVE_DECODE not 0)" })
    : undefined

/** Seeds are mixed as 32-bit words (src/random/rng.ts). */
export const seedRange: Range = { min: 0, max: 2 ** 32 - 1 }

const units: Readonly<Record<string, number>> = { "": 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }

/** "512M", "8G", "1.5GiB", "1000000" (bytes): binary units; a usage error otherwise. */
export const parseBytes = (flag: string, text: string): Effect.Effect<number, UsageError> => {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(text.trim())
  const bytes = m ? Number(m[1]) * units[m[2]!.toLowerCase()]! : Number.NaN
  return Number.isFinite(bytes) && bytes > 0
    ? Effect.succeed(bytes)
    : Effect.fail(new UsageError({ message: `--${flag} must be a size such as 512M, 8G or 1.5GiB (binary units), got ${JSON.stringify(text)}` }))
}
