import type { TensorArrays } from "../../train/checkpoint.js"
import type { DecoderSpec } from "../../../dsl/nodes.js"
import { Rng } from "../../random/rng.js"
import { type Kept, keptOf, materialise } from "../materialise.js"
import type { Remove } from "../../experiment/prune/methods/structured.js"
import { chooseRemoved } from "../select.js"
import type { Pruned } from "./compute.js"

/** Scores drawn at random from the run's seed: the baseline that structured methods are compared with. */
export const randomScores = (seed: number, label: string, sizes: ReadonlyArray<number>): number[][] => {
  const rng = Rng.derive(seed, label)
  return sizes.map((n) => Array.from({ length: n }, () => rng.nextFloat()))
}

/** Removes, by score, heads or neurons of the nodes with these prefixes, and makes the smaller model. */
export const removeByScore = (
  spec: DecoderSpec,
  weights: TensorArrays,
  which: "heads" | "neurons",
  prefixes: ReadonlyArray<string>,
  scores: ReadonlyArray<ReadonlyArray<number>>,
  remove: Remove,
): Pruned => {
  const removed = chooseRemoved(scores, remove)
  const kept = new Map(prefixes.map((p, i) => [p, keptOf(removed[i]!)]))
  const { model, params } = materialise(spec, weights, (which === "heads" ? { heads: kept } : { neurons: kept }) satisfies Kept)
  return { model, params, details: { kept: Object.fromEntries(kept), scores } }
}
