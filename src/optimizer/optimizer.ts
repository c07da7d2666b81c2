import type * as tf from "@tensorflow/tfjs"
import type { NamedParam } from "../../dsl/params.js"
import { adamw } from "./compute/adamw.js"
import type { Optimizer, OptimizerCompute } from "./compute/compute.js"
import { lion } from "./compute/lion.js"
import { muon } from "./compute/muon.js"
import type { OptimizerConfig, OptimizerOf, OptimizerTag } from "../experiment/optimizer/spec.js"

/** How each optimiser computes, by the tags of its description (src/experiment/optimizer/spec.ts): a described optimiser without one does not compile. */
const computations: { readonly [K in OptimizerTag]: OptimizerCompute<OptimizerOf<K>> } = {
  adamw,
  muon,
  lion,
}

/**
 * The run's optimiser over `params`, declared in `table`; a parameter decays when the run
 * decays all or its declaration says so. `totalSteps` is the run's number of updates.
 */
export const makeOptimizer = (config: OptimizerConfig, params: Record<string, tf.Variable>, table: ReadonlyArray<NamedParam>, totalSteps: number): Optimizer => {
  const declared = new Map(table.map((p) => [p.name, p]))
  const param = (name: string): NamedParam => {
    const p = declared.get(name)
    if (p === undefined) throw new Error(`optimizer: parameter "${name}" has no declaration`)
    return p
  }
  return (computations[config.kind] as OptimizerCompute<OptimizerConfig>)(config, params, { decays: (name) => config.decayAll || param(name).decl.decay, param, totalSteps })
}
