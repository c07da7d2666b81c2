import { Schema } from "effect"
import { PositiveNumber } from "../../../../dsl/fields.js"
import type { ObjectiveDescription } from "./description.js"

/** PaLM's z-loss: coefficient · mean (log Z)² of the logits' normalisers, added to the training loss (src/objective/z-loss.ts). */
export const ZLossField = Schema.optionalKey(PositiveNumber)

/**
 * The plain next-token cross-entropy: the default, which a spec.json without `objective`
 * means; with `zLoss` it trains on cross-entropy plus the z-loss (validation stays plain cross-entropy).
 */
const schema = Schema.Struct({ kind: Schema.Literal("cross-entropy"), zLoss: ZLossField })
export type CrossEntropy = typeof schema.Type

export const crossEntropyObjective: ObjectiveDescription<CrossEntropy> & { readonly make: (o?: { readonly zLoss?: number }) => CrossEntropy } = {
  schema,
  make: (o = {}) => ({ kind: "cross-entropy", ...(o.zLoss === undefined ? {} : { zLoss: o.zLoss }) }),
  implicit: (o) => o.zLoss === undefined,
  check: () => [],
  sources: () => [],
  withSources: (o) => o,
  checkSource: () => [],
  label: (o) => `cross-entropy${zLossLabel(o.zLoss)}`,
}

/** ", z-loss 0.0001", or nothing. */
export const zLossLabel = (zLoss: number | undefined): string => (zLoss === undefined ? "" : `, z-loss ${zLoss}`)
