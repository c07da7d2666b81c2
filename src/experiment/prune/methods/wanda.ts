import { Schema } from "effect"
import type { MethodDescription } from "./method.js"
import { Calibration, defaultCalibration, fractionIssues } from "./fields.js"

/**
 * Wanda (Sun et al. 2023, "A Simple and Effective Pruning Approach for Large Language
 * Models"): weight W_ij (output i, input j) scores |W_ij|·‖X_j‖₂, the norm of input feature j
 * over the calibration tokens; in every output row the lowest-scoring `sparsity` of the
 * inputs are removed. No weight is updated.
 */
const schema = Schema.Struct({ kind: Schema.Literal("wanda"), sparsity: Schema.Finite, calibration: Calibration })
export type Wanda = typeof schema.Type

const make = (o: { readonly sparsity: number; readonly calibration?: { readonly batches: number } }): Wanda => ({
  kind: "wanda",
  sparsity: o.sparsity,
  calibration: o.calibration ?? defaultCalibration,
})

export const wanda: MethodDescription<Wanda> & { make: typeof make } = {
  schema,
  make,
  structure: "weights",
  check: (m) => fractionIssues("sparsity", m.sparsity),
  label: (m) => `wanda(${m.sparsity})`,
}
