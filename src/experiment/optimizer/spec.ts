import { Schema } from "effect"
import { moduleFor, type SpecOf, type SpecOfTag } from "../../../dsl/registry.js"
import { adamwOptimizer } from "./kinds/adamw.js"
import type { OptimizerDescription } from "./kinds/description.js"
import { muonOptimizer } from "./kinds/muon.js"

/**
 * The optimisers, by tag. Adding one is its description here (one module, one line) and its
 * computation in src/optimizer/optimizer.ts, whose record is typed by these tags.
 */
export const optimizers = {
  adamw: adamwOptimizer,
  muon: muonOptimizer,
} as const

export type OptimizerConfig = SpecOf<typeof optimizers>
export type OptimizerTag = keyof typeof optimizers
export type OptimizerOf<K extends OptimizerTag> = SpecOfTag<typeof optimizers, K>

export const OptimizerSchema = Schema.Union(Object.values(optimizers).map((o) => o.schema) as [typeof adamwOptimizer.schema, typeof muonOptimizer.schema])

const optimizerModule = (o: OptimizerConfig) => moduleFor<OptimizerDescription<OptimizerConfig>>(optimizers, "optimizer", o)

export const adamw = adamwOptimizer.make
export const muon = muonOptimizer.make

/** One line for listings. */
export const describeOptimizer = (o: OptimizerConfig): string => optimizerModule(o).label(o)
