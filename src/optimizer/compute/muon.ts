import { Muon } from "../muon.js"
import { isHiddenMatrix, type MuonOptions } from "../../experiment/optimizer/kinds/muon.js"
import { lrAt } from "../../schedule/index.js"
import type { OptimizerCompute } from "./compute.js"

export const muon: OptimizerCompute<MuonOptions> = (o, params, { decays, param, totalSteps }) =>
  new Muon(params, {
    momentum: o.momentum,
    nesterov: o.nesterov,
    steps: o.steps,
    weightDecay: o.weightDecay,
    decay: decays,
    orthogonalised: (name) => isHiddenMatrix(param(name)),
    adamw: { beta1: o.adamw.beta1, beta2: o.adamw.beta2, eps: o.adamw.eps, weightDecay: o.adamw.weightDecay, decay: decays },
    adamwLr: (step) => lrAt(o.adamw.lr, step, totalSteps),
  })
