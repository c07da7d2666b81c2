import { Schema } from "effect"
import { describeSchedule, type LrSchedule } from "../../../schedule/index.js"
import { Unit } from "./adamw.js"
import { commonFields, type OptimizerDescription } from "./description.js"

/**
 * Lion (src/optimizer/lion.ts): the sign of an interpolation of momentum and gradient, with
 * decoupled weight decay on the parameters AdamW decays. Its steps have unit size per weight,
 * so it wants a rate 3–10× smaller than AdamW's and a decay 3–10× larger.
 */
const schema = Schema.Struct({ kind: Schema.Literal("lion"), ...commonFields, beta1: Unit, beta2: Unit })
export type LionOptions = typeof schema.Type

export const lionOptimizer: OptimizerDescription<LionOptions> & {
  readonly make: (o: { lr: LrSchedule; weightDecay?: number; betas?: readonly [number, number]; clip?: number; decayAll?: boolean }) => LionOptions
} = {
  schema,
  // The paper's betas; a decay 10× adamw()'s, to go with a rate about 10× smaller.
  make: (o) => ({ kind: "lion", lr: o.lr, weightDecay: o.weightDecay ?? 1, beta1: o.betas?.[0] ?? 0.9, beta2: o.betas?.[1] ?? 0.99, clip: o.clip ?? 1, decayAll: o.decayAll ?? false }),
  label: (o) => `lion(β=${o.beta1},${o.beta2}, wd ${o.weightDecay}, clip ${o.clip}), lr ${describeSchedule(o.lr)}`,
  state: () => ({ perWeight: 1, what: "Lion momentum" }),
  updateFlops: () => 0,
}
