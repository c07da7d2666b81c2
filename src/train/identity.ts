import type { RunSpec } from "../experiment/define.js"
import { isExplicit } from "../experiment/objective/spec.js"

/** Fields whose change alters the trained weights; eval, checkpoint and sampling settings do not. */
export const trainingIdentity = (run: RunSpec) => ({
  model: run.model,
  seed: run.seed,
  data: run.training.data,
  budget: run.training.budget,
  batch: run.training.batch,
  accumulate: run.training.accumulate,
  optimizer: run.training.optimizer,
  ...(run.prune === undefined ? {} : { prune: run.prune }),
  // Absent for plain cross-entropy from scratch, so earlier runs keep their hashes.
  ...(isExplicit(run.objective) ? { objective: run.objective } : {}),
  ...(run.init ? { init: run.init } : {}),
})
