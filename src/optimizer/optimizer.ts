import type * as tf from "@tensorflow/tfjs"
import { adamw } from "./compute/adamw.js"
import type { Optimizer, OptimizerCompute } from "./compute/compute.js"
import type { OptimizerConfig, OptimizerOf, OptimizerTag } from "../experiment/optimizer/spec.js"

/** How each optimiser computes, by the tags of its description (src/experiment/optimizer/spec.ts): a described optimiser without one does not compile. */
const computations: { readonly [K in OptimizerTag]: OptimizerCompute<OptimizerOf<K>> } = {
  adamw,
}

/** The run's optimiser over `params`; a parameter decays when the run decays all or `decays(name)` says so. */
export const makeOptimizer = (config: OptimizerConfig, params: Record<string, tf.Variable>, decays: (name: string) => boolean): Optimizer =>
  (computations[config.kind] as OptimizerCompute<OptimizerConfig>)(config, params, (name) => config.decayAll || decays(name))
