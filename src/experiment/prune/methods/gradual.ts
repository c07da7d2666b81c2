import { Schema } from "effect"
import { PositiveInt } from "../../../../dsl/fields.js"
import type { Issue } from "../../../../dsl/kind.js"
import type { MethodDescription } from "./method.js"
import { fractionIssues, Scope } from "./fields.js"

/**
 * Gradual magnitude pruning during the fine-tune (Zhu & Gupta 2017, "To prune, or not to
 * prune"): the sparsity follows s_t = s_f + (s_i − s_f)(1 − (t − t0)/(nΔt))³ for
 * t = t0, t0 + Δt, …, t0 + nΔt, and at each of those steps the smallest-magnitude weights
 * are masked up to s_t; between them, and after, the masks hold. t0 and t0 + nΔt are given
 * as fractions of the fine-tune (`start`, `end`), so a shorter fine-tune keeps the shape;
 * Δt is `every` steps.
 */
const schema = Schema.Struct({
  kind: Schema.Literal("gradual"),
  scope: Scope,
  sparsity: Schema.Finite,
  initial: Schema.Finite,
  start: Schema.Finite,
  end: Schema.Finite,
  every: PositiveInt,
})
export type Gradual = typeof schema.Type

const make = (o: {
  readonly sparsity: number
  readonly scope?: Scope
  readonly initial?: number
  readonly start?: number
  readonly end?: number
  readonly every?: number
}): Gradual => ({
  kind: "gradual",
  scope: o.scope ?? "layer",
  sparsity: o.sparsity,
  initial: o.initial ?? 0,
  start: o.start ?? 0,
  end: o.end ?? 0.75,
  every: o.every ?? 4,
})

const check = (m: Gradual, finetune: boolean): Issue[] => [
  ...fractionIssues("sparsity", m.sparsity),
  ...fractionIssues("initial", m.initial),
  ...(m.initial > m.sparsity ? [{ path: ["initial"], message: `the initial sparsity ${m.initial} exceeds the final ${m.sparsity}` }] : []),
  ...(m.start >= 0 && m.start <= 1 ? [] : [{ path: ["start"], message: `${m.start} is outside [0, 1]: the fraction of the fine-tune at which pruning starts` }]),
  ...(m.end >= m.start && m.end <= 1 ? [] : [{ path: ["end"], message: `${m.end} is outside [start, 1] = [${m.start}, 1]: the fraction of the fine-tune by which the final sparsity is reached` }]),
  ...(finetune ? [] : [{ path: [], message: "gradual pruning happens during a fine-tune; give the variant finetune: { tokens } (or { steps })" }]),
]

export const gradual: MethodDescription<Gradual> & { make: typeof make } = {
  schema,
  make,
  structure: "weights",
  check: (m, _source, finetune) => check(m, finetune),
  label: (m) => `gradual(${m.scope}, ${m.initial}→${m.sparsity}, ${m.start}–${m.end}, every ${m.every})`,
}
