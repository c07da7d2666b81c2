import type { CrossEntropy } from "../../experiment/objective/kinds/cross-entropy.js"
import type { ObjectiveCompute } from "./compute.js"

/** The model's own loss: next-token cross-entropy, with a depth policy's objective folded in. */
export const crossEntropy: ObjectiveCompute<CrossEntropy> = (_o, { model }) => ({
  params: {},
  table: [],
  guide: () => undefined,
  loss: (params, batch, _guide, options) => model.loss(params, batch, options),
  dispose: () => {},
})
