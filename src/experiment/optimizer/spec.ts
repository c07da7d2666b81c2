import { Schema } from "effect"
import type { NamedParam } from "../../../dsl/params.js"
import { moduleFor, type SpecOf, type SpecOfTag } from "../../../dsl/registry.js"
import { adamwOptimizer } from "./kinds/adamw.js"
import type { OptimizerDescription } from "./kinds/description.js"
import { lionOptimizer } from "./kinds/lion.js"
import { muonOptimizer } from "./kinds/muon.js"

/**
 * The optimisers, by tag. Adding one is its description here (one module, one line) and its
 * computation in src/optimizer/optimizer.ts, whose record is typed by these tags.
 */
export const optimizers = {
  adamw: adamwOptimizer,
  muon: muonOptimizer,
  lion: lionOptimizer,
} as const

export type OptimizerConfig = SpecOf<typeof optimizers>
export type OptimizerTag = keyof typeof optimizers
export type OptimizerOf<K extends OptimizerTag> = SpecOfTag<typeof optimizers, K>

export const OptimizerSchema = Schema.Union(Object.values(optimizers).map((o) => o.schema) as [typeof adamwOptimizer.schema, typeof muonOptimizer.schema, typeof lionOptimizer.schema])

const optimizerModule = (o: OptimizerConfig) => moduleFor<OptimizerDescription<OptimizerConfig>>(optimizers, "optimizer", o)

export const adamw = adamwOptimizer.make
export const muon = muonOptimizer.make
export const lion = lionOptimizer.make

/** One line for listings. */
export const describeOptimizer = (o: OptimizerConfig): string => optimizerModule(o).label(o)

/** Its state beside the weights: float32 values per weight (at most) and what they are. */
export const optimizerState = (o: OptimizerConfig): { readonly perWeight: number; readonly what: string } => optimizerModule(o).state(o)

/** FLOPs of one update of `params` beyond the model's passes (matrix products, 2 per multiply-add): Muon's Newton–Schulz iterations. */
export const optimizerUpdateFlops = (o: OptimizerConfig, params: ReadonlyArray<NamedParam>): number => optimizerModule(o).updateFlops(o, params)
