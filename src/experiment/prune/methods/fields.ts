import { Schema } from "effect"
import type { Issue } from "../../../../dsl/kind.js"
import { PositiveInt } from "../../../../dsl/fields.js"

/** Fields and checks the pruning methods share. */

/** Which weights compete with each other: all prunable matrices together, or each matrix alone. */
export const Scope = Schema.Literals(["global", "layer"])
export type Scope = typeof Scope.Type

/** Training batches the scores are measured on (Wanda's activations, head and neuron importance). */
export const Calibration = Schema.Struct({ batches: PositiveInt })
export type Calibration = typeof Calibration.Type

export const defaultCalibration: Calibration = { batches: 8 }

/** A fraction to remove: 0 keeps everything, 1 would remove everything and is refused. */
export const fractionIssues = (field: string, value: number): Issue[] =>
  value >= 0 && value < 1 ? [] : [{ path: [field], message: `${value} is outside [0, 1): give the fraction to remove, e.g. 0.5 for half` }]
