import { AdamW } from "../adamw.js"
import type { AdamWOptions } from "../../experiment/optimizer/kinds/adamw.js"
import type { OptimizerCompute } from "./compute.js"

export const adamw: OptimizerCompute<AdamWOptions> = (o, params, { decays }) => new AdamW(params, { beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay, decay: decays })
