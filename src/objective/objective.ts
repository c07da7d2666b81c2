import type { RunSpec } from "../experiment/define.js"
import type { Model } from "../model/compile.js"
import type { SourceRun } from "../train/sources.js"
import type { ObjectiveCompute, TrainingObjective } from "./compute/compute.js"
import { crossEntropy } from "./compute/cross-entropy.js"
import { distill } from "./compute/distill.js"
import { crossEntropyObjective } from "../experiment/objective/kinds/cross-entropy.js"
import { type Objective, type ObjectiveOf, type ObjectiveTag } from "../experiment/objective/spec.js"

/** How each objective computes, by the tags of its description (src/experiment/objective/spec.ts): a described objective without one does not compile. */
const computations: { readonly [K in ObjectiveTag]: ObjectiveCompute<ObjectiveOf<K>> } = {
  "cross-entropy": crossEntropy,
  distill,
}

/** The run's objective (cross-entropy when it states none), given the runs its description names as sources, opened. */
export const trainingObjective = (run: RunSpec, model: Model, sources: ReadonlyArray<SourceRun>): TrainingObjective => {
  const o: Objective = run.objective ?? crossEntropyObjective.make()
  return (computations[o.kind] as ObjectiveCompute<Objective>)(o, { run, model, sources })
}
