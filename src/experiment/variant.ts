import type { DecoderSpec } from "../../dsl/nodes.js"
import type { Objective } from "./objective/spec.js"
import type { WarmStart } from "./warm-start/index.js"

/**
 * One named variant of an experiment that differs in more than its model: its own objective
 * (overriding the experiment's) and/or a warm start from another run. A plain model spec is
 * a variant with neither.
 */
export interface Variant {
  readonly op: "variant"
  readonly model: DecoderSpec
  readonly objective?: Objective
  readonly init?: WarmStart
}

export const variant = (model: DecoderSpec, o: { readonly objective?: Objective; readonly init?: WarmStart }): Variant => ({
  op: "variant",
  model,
  ...(o.objective ? { objective: o.objective } : {}),
  ...(o.init ? { init: o.init } : {}),
})

/** A variant record's entry as its parts; `objective` falls back to the experiment's. */
export const variantParts = (entry: unknown, objective: Objective | undefined): { model: unknown; objective?: unknown; objectiveAt: "variant" | "experiment"; init?: unknown } => {
  const v = entry as Partial<Variant> | undefined
  if (v?.op !== "variant") return { model: entry, objectiveAt: "experiment", ...(objective ? { objective } : {}) }
  return {
    model: v.model,
    objectiveAt: v.objective !== undefined ? "variant" : "experiment",
    ...(v.objective !== undefined ? { objective: v.objective } : objective ? { objective } : {}),
    ...(v.init !== undefined ? { init: v.init } : {}),
  }
}
