import { ffnHidden } from "../../../dsl/ffn.js"
import type { Neurons } from "../../experiment/prune/methods/neurons.js"
import { activationNorms, outputGradients } from "../importance.js"
import { ffnUnits } from "../../experiment/prune/units.js"
import type { PruneCompute } from "./compute.js"
import { randomScores, removeByScore } from "./structured.js"

export const neurons: PruneCompute<Neurons> = (m, input) => {
  const units = ffnUnits(input.model.spec)
  const batches = () => input.calibration(m.calibration.batches)
  const scores =
    m.by === "taylor"
      ? outputGradients(input.model, input.params, batches(), "neurons")
      : m.by === "activation"
        ? activationNorms(input.model, input.params, batches())
        : randomScores(input.seed, "prune/neurons", units.map((u) => ffnHidden(u.spec, input.model.spec.width)))
  return removeByScore(input.model.spec, input.weights, "neurons", units.map((u) => u.prefix), scores, m.remove)
}
