import type { DecoderSpec } from "../../dsl/nodes.js"
import { Schema } from "effect"
import { PositiveInt } from "../../dsl/fields.js"
import { type Budget, BudgetSchema } from "./budget.js"
import type { Objective } from "./objective/spec.js"
import { type OptimizerConfig, OptimizerSchema } from "./optimizer/spec.js"
import type { WarmStart } from "./warm-start/index.js"

/** What a variant may set of the experiment's training, over it (a recipe's optimiser, schedule and budget). */
export const VariantTrainingSchema = Schema.Struct({
  optimizer: Schema.optionalKey(OptimizerSchema),
  budget: Schema.optionalKey(BudgetSchema),
  batch: Schema.optionalKey(PositiveInt),
  accumulate: Schema.optionalKey(PositiveInt),
})
export interface VariantTraining {
  readonly optimizer?: OptimizerConfig
  readonly budget?: Budget
  readonly batch?: number
  readonly accumulate?: number
}

/**
 * One named variant of an experiment that differs in more than its model: its own objective
 * (overriding the experiment's), a warm start from another run, and/or its own optimiser,
 * budget or batch (a speedrun's records differ in their recipes). A plain model spec is a
 * variant with none.
 */
export interface Variant {
  readonly op: "variant"
  readonly model: DecoderSpec
  readonly objective?: Objective
  readonly init?: WarmStart
  readonly training?: VariantTraining
}

export const variant = (model: DecoderSpec, o: { readonly objective?: Objective; readonly init?: WarmStart } & VariantTraining): Variant => {
  const training: VariantTraining = {
    ...(o.optimizer ? { optimizer: o.optimizer } : {}),
    ...(o.budget ? { budget: o.budget } : {}),
    ...(o.batch !== undefined ? { batch: o.batch } : {}),
    ...(o.accumulate !== undefined ? { accumulate: o.accumulate } : {}),
  }
  return {
    op: "variant",
    model,
    ...(o.objective ? { objective: o.objective } : {}),
    ...(o.init ? { init: o.init } : {}),
    ...(Object.keys(training).length > 0 ? { training } : {}),
  }
}

/** A variant record's entry as its parts; `objective` falls back to the experiment's. */
export const variantParts = (
  entry: unknown,
  objective: Objective | undefined,
): { model: unknown; objective?: unknown; objectiveAt: "variant" | "experiment"; init?: unknown; training?: unknown } => {
  const v = entry as Partial<Variant> | undefined
  if (v?.op !== "variant") return { model: entry, objectiveAt: "experiment", ...(objective ? { objective } : {}) }
  return {
    model: v.model,
    objectiveAt: v.objective !== undefined ? "variant" : "experiment",
    ...(v.objective !== undefined ? { objective: v.objective } : objective ? { objective } : {}),
    ...(v.init !== undefined ? { init: v.init } : {}),
    ...(v.training !== undefined ? { training: v.training } : {}),
  }
}
