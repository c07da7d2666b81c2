import type { PruneMethod, PruneMethodTag, pruneMethods } from "../../experiment/prune/methods/index.js"
import type { PruneCompute, PruneInput, Pruned } from "./compute.js"
import { gradual } from "./gradual.js"
import { heads } from "./heads.js"
import { magnitude } from "./magnitude.js"
import { neurons } from "./neurons.js"
import { wanda } from "./wanda.js"

/** How each registered method computes, by the same tags: a described method without one does not compile. */
const computations: { readonly [K in PruneMethodTag]: PruneCompute<(typeof pruneMethods)[K]["schema"]["Type"]> } = {
  magnitude,
  gradual,
  wanda,
  heads,
  neurons,
}

export const runMethod = (method: PruneMethod, input: PruneInput): Pruned => (computations[method.kind] as PruneCompute<PruneMethod>)(method, input)
