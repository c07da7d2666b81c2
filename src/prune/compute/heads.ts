import type { Heads } from "../../experiment/prune/methods/heads.js"
import { outputGradients } from "../importance.js"
import { attentionUnits } from "../../experiment/prune/units.js"
import type { PruneCompute } from "./compute.js"
import { randomScores, removeByScore } from "./structured.js"

export const heads: PruneCompute<Heads> = (m, input) => {
  const units = attentionUnits(input.model.spec)
  const scores =
    m.by === "importance"
      ? outputGradients(input.model, input.params, input.calibration(m.calibration.batches), "heads")
      : randomScores(input.seed, "prune/heads", units.map((u) => u.spec.heads))
  return removeByScore(input.model.spec, input.weights, "heads", units.map((u) => u.prefix), scores, m.remove)
}
