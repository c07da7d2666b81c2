import type { CrossEntropy } from "../../experiment/objective/kinds/cross-entropy.js"
import { crossEntropy as crossEntropyLoss } from "../../model/loss.js"
import { withZLoss } from "../z-loss.js"
import type { ObjectiveCompute } from "./compute.js"

/** The model's own loss: next-token cross-entropy (plus the z-loss when asked), with a depth policy's objective folded in. */
export const crossEntropy: ObjectiveCompute<CrossEntropy> = (o, { model }) => {
  const term = withZLoss(crossEntropyLoss, o.zLoss)
  return {
    params: {},
    table: [],
    guide: () => undefined,
    loss: (params, batch, _guide, options) => model.loss(params, batch, options, term),
    dispose: () => {},
  }
}
