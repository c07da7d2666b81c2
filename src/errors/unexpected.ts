import { Effect } from "effect"

/**
 * Where a failure happened, for the message of an error nobody anticipated (a thrown
 * exception, a broken invariant): which experiment, which run directory, which step.
 */
export interface Where {
  readonly experiment?: string
  readonly runDir?: string
  readonly step?: number
}

/** A defect with the places it passed through; the innermost (most specific) facts win. */
export class Unexpected extends Error {
  constructor(
    readonly defect: unknown,
    readonly where: Where,
  ) {
    super(defect instanceof Error ? defect.message : String(defect))
    this.name = "Unexpected"
  }
}

/** Annotates the defects of `self` with `where`, without touching its typed failures. */
export const located =
  (where: Where) =>
  <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.catchDefect(self, (defect) =>
      Effect.die(defect instanceof Unexpected ? new Unexpected(defect.defect, { ...where, ...defect.where }) : new Unexpected(defect, where)),
    )

export const describeWhere = (where: Where): string =>
  [
    where.experiment !== undefined ? `experiment ${where.experiment}` : undefined,
    where.runDir !== undefined ? `run directory ${where.runDir}` : undefined,
    where.step !== undefined ? `step ${where.step}` : undefined,
  ]
    .filter((s) => s !== undefined)
    .join(", ")
