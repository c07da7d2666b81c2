import { moduleFor, type SpecOf } from "../../../../dsl/registry.js"
import { gradual } from "./gradual.js"
import { heads } from "./heads.js"
import { magnitude } from "./magnitude.js"
import type { MethodDescription } from "./method.js"
import { neurons } from "./neurons.js"
import { wanda } from "./wanda.js"

/**
 * The pruning methods, by tag. Adding one is its description here (one module, one line)
 * and its computation in src/prune/compute/index.ts, whose record is typed by these tags,
 * so a method without a computation does not compile.
 */
export const pruneMethods = {
  magnitude,
  gradual,
  wanda,
  heads,
  neurons,
} as const

export type PruneMethod = SpecOf<typeof pruneMethods>
export type PruneMethodTag = keyof typeof pruneMethods

export const methodModule = (method: PruneMethod) => moduleFor<MethodDescription<PruneMethod>>(pruneMethods, "pruning method", method)

/** The combinators experiment files write: `magnitude({ scope: "global", sparsity: 0.5 })`, `heads({ remove: 0.25, by: "random" })`, … */
export const magnitudeMethod = magnitude.make
export const gradualMethod = gradual.make
export const wandaMethod = wanda.make
export const headsMethod = heads.make
export const neuronsMethod = neurons.make
