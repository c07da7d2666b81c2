import { Schema } from "effect"
import type { MethodDescription } from "./method.js"
import { fractionIssues, Scope } from "./fields.js"

/**
 * One-shot unstructured magnitude pruning (Han et al. 2015): the smallest |w| of the prunable
 * matrices are set to zero, either over all of them together ("global", one threshold) or in
 * each matrix separately ("layer", every matrix at exactly the asked sparsity).
 */
const schema = Schema.Struct({ kind: Schema.Literal("magnitude"), scope: Scope, sparsity: Schema.Finite })
export type Magnitude = typeof schema.Type

const make = (o: { readonly scope?: Scope; readonly sparsity: number }): Magnitude => ({ kind: "magnitude", scope: o.scope ?? "global", sparsity: o.sparsity })

export const magnitude: MethodDescription<Magnitude> & { make: typeof make } = {
  schema,
  make,
  structure: "weights",
  check: (m) => fractionIssues("sparsity", m.sparsity),
  label: (m) => `magnitude(${m.scope}, ${m.sparsity})`,
}
