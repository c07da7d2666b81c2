import { Schema } from "effect"
import { PositiveNumber } from "../../../../dsl/fields.js"
import { describeSchedule, type LrSchedule } from "../../../schedule/index.js"
import { commonFields, type OptimizerDescription } from "./description.js"

export const Unit = Schema.Finite.check(Schema.isBetween({ minimum: 0, maximum: 1, exclusiveMaximum: true }))

/** AdamW's own fields, which Muon's AdamW part shares. */
export const adamwFields = { beta1: Unit, beta2: Unit, eps: PositiveNumber }

/** The options `adamw()` and Muon's AdamW part default. */
export interface AdamWParts {
  readonly weightDecay?: number
  readonly betas?: readonly [number, number]
  readonly eps?: number
}

export const adamwDefaults = (o: AdamWParts) => ({ weightDecay: o.weightDecay ?? 0.1, beta1: o.betas?.[0] ?? 0.9, beta2: o.betas?.[1] ?? 0.95, eps: o.eps ?? 1e-8 })

/** AdamW with decoupled weight decay, PyTorch's update order (src/optimizer/adamw.ts). */
const schema = Schema.Struct({ kind: Schema.Literal("adamw"), ...commonFields, ...adamwFields })
export type AdamWOptions = typeof schema.Type

export const adamwOptimizer: OptimizerDescription<AdamWOptions> & {
  readonly make: (o: AdamWParts & { lr: LrSchedule; clip?: number; decayAll?: boolean }) => AdamWOptions
} = {
  schema,
  make: (o) => ({ kind: "adamw", lr: o.lr, ...adamwDefaults(o), clip: o.clip ?? 1, decayAll: o.decayAll ?? false }),
  state: () => ({ perWeight: 2, what: "AdamW moments" }),
  updateFlops: () => 0,
  label: (o) => `adamw(β=${o.beta1},${o.beta2}, wd ${o.weightDecay}, clip ${o.clip}), lr ${describeSchedule(o.lr)}`,
}
