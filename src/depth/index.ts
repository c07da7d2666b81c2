import * as tf from "@tensorflow/tfjs"
import type { DepthPolicy, PolicyOf, PolicyTag } from "../../dsl/kinds/depth/index.js"
import { moduleFor } from "../../dsl/registry.js"
import type { DepthCompute, DepthContext, DepthOutput } from "./compute.js"
import { earlyExit } from "./early-exit.js"
import { layerDrop } from "./layer-drop.js"
import { mixtureOfDepths } from "./mixture-of-depths.js"

/** How each depth policy computes, by the tags of its description (dsl/kinds/depth/index.ts). */
export const depthCompute: { readonly [K in PolicyTag]: DepthCompute<PolicyOf<K>> } = {
  "layer-drop": layerDrop,
  "early-exit": earlyExit,
  "mixture-of-depths": mixtureOfDepths,
}

export const depthForward = (policy: DepthPolicy, x: tf.Tensor3D, ctx: DepthContext): DepthOutput =>
  moduleFor<DepthCompute<DepthPolicy>>(depthCompute, "depth policy", policy).forward(policy, x, ctx)

/** Σ wᵢ·loss(outputᵢ) / Σ wᵢ, plus the auxiliary loss: the one place a training objective (cross-entropy, distillation) meets a policy's. */
export const depthObjective = (objective: NonNullable<DepthOutput["objective"]>, loss: (logits: tf.Tensor3D) => tf.Scalar): tf.Scalar => {
  const total = objective.outputs.reduce((s, o) => s + o.weight, 0)
  const main =
    objective.outputs.length === 1 ? loss(objective.outputs[0]!.logits) : (tf.div(tf.addN(objective.outputs.map((o) => tf.mul(loss(o.logits), o.weight))), total) as tf.Scalar)
  return objective.aux ? (tf.add(main, objective.aux) as tf.Scalar) : main
}
