import type { Gradual } from "../../experiment/prune/methods/gradual.js"
import { prunableParams } from "../prunable.js"
import { cubicPlan, isUpdateStep, sparsityAt } from "../schedule.js"
import { applyMasks, type PruneCompute } from "./compute.js"
import { magnitudeMasks } from "./magnitude.js"

/**
 * Gradual magnitude pruning: masks by magnitude at the cubic schedule's sparsity, recomputed
 * from the current weights at each of its steps. Masked weights are zero, the smallest of
 * all, so a weight once removed stays removed.
 */
export const gradual: PruneCompute<Gradual> = (m, input) => {
  const plan = cubicPlan(m, input.steps)
  const names = prunableParams(input.model.table).map((p) => p.name)
  const initial = magnitudeMasks(input.weights, names, m.scope, isUpdateStep(plan, 0) ? sparsityAt(plan, 0) : 0)
  return {
    model: input.model.spec,
    params: applyMasks(input.weights, initial),
    masks: { initial, remask: (step, weights) => (isUpdateStep(plan, step) ? magnitudeMasks(weights(), names, m.scope, sparsityAt(plan, step)) : undefined) },
    details: { schedule: plan },
  }
}
