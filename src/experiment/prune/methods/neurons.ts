import { Schema } from "effect"
import { ffnHidden } from "../../../../dsl/ffn.js"
import { ffnUnits } from "../units.js"
import { Calibration, defaultCalibration } from "./fields.js"
import type { MethodDescription } from "./method.js"
import { Remove, removeIssues, removeLabel } from "./structured.js"

/**
 * FFN neurons (hidden units) by score: first-order Taylor |Σ a·∂L/∂a| over the calibration
 * tokens (Molchanov et al. 2017), which is |∂L/∂ξ| for a mask ξ on the neuron, or the
 * activation's L2 norm; normalised per layer and removed lowest first across layers, as
 * heads are. `by: "random"` is the baseline. The pruned model's FFNs are narrower (`hidden`).
 */
const schema = Schema.Struct({
  kind: Schema.Literal("neurons"),
  remove: Remove,
  by: Schema.Literals(["taylor", "activation", "random"]),
  calibration: Calibration,
})
export type Neurons = typeof schema.Type

const make = (o: { readonly remove: Remove; readonly by?: Neurons["by"]; readonly calibration?: { readonly batches: number } }): Neurons => ({
  kind: "neurons",
  remove: o.remove,
  by: o.by ?? "taylor",
  calibration: o.calibration ?? defaultCalibration,
})

export const neurons: MethodDescription<Neurons> & { make: typeof make } = {
  schema,
  make,
  structure: "neurons",
  check: (m, source) =>
    removeIssues(
      m.remove,
      ffnUnits(source).map((u) => ffnHidden(u.spec, source.width)),
      "neurons",
    ),
  label: (m) => `neurons(${removeLabel(m.remove)}, ${m.by})`,
}
