import { Schema } from "effect"
import { NonNegativeInt } from "../../../../dsl/fields.js"
import type { Issue } from "../../../../dsl/kind.js"
import { fractionIssues } from "./fields.js"

/**
 * How many heads or neurons a structured method removes: a fraction of all of them, chosen
 * across layers by score, or a count per layer (one entry per attention or FFN node, in
 * order). Every layer keeps at least one.
 */
export const Remove = Schema.Union([Schema.Finite, Schema.Array(NonNegativeInt)])
export type Remove = typeof Remove.Type

/** The total removed when `remove` is a fraction. */
export const removedOf = (fraction: number, total: number): number => Math.round(fraction * total)

export const removeIssues = (remove: Remove, sizes: ReadonlyArray<number>, what: string): Issue[] => {
  if (typeof remove === "number") {
    const bad = fractionIssues("remove", remove)
    if (bad.length > 0) return bad
    const total = sizes.reduce((a, b) => a + b, 0)
    const n = removedOf(remove, total)
    const most = total - sizes.length
    return n <= most
      ? []
      : [{ path: ["remove"], message: `removing ${remove} of the ${total} ${what} is ${n}, but each of the ${sizes.length} layers keeps at least one, so at most ${most} can go` }]
  }
  if (remove.length !== sizes.length) return [{ path: ["remove"], message: `${remove.length} counts for ${sizes.length} layers with ${what}; give one per layer or a fraction` }]
  return remove.flatMap((r, i) =>
    r < sizes[i]! ? [] : [{ path: ["remove", i], message: `layer ${i} has ${sizes[i]} ${what}; removing ${r} would leave none: every layer keeps at least one` }],
  )
}

export const removeLabel = (remove: Remove): string => (typeof remove === "number" ? `${remove}` : `[${remove.join(",")}]`)
