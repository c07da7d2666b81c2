import { Lion } from "../lion.js"
import type { LionOptions } from "../../experiment/optimizer/kinds/lion.js"
import type { OptimizerCompute } from "./compute.js"

export const lion: OptimizerCompute<LionOptions> = (o, params, { decays }) => new Lion(params, { beta1: o.beta1, beta2: o.beta2, weightDecay: o.weightDecay, decay: decays })
