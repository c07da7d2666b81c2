import type * as tf from "@tensorflow/tfjs"
import type { LayerDrop } from "../../dsl/kinds/depth/layer-drop.js"
import { Rng } from "../random/rng.js"
import type { DepthCompute } from "./compute.js"

/**
 * Whether block `block` is skipped in the training step whose dropout seed is `seed`: one
 * draw per (seed, block), so the pattern is a pure function of run seed, step, micro-batch
 * and block, and a resumed run skips exactly what an uninterrupted one does.
 */
export const dropped = (policy: LayerDrop, seed: number, block: number): boolean => Rng.derive(seed, `layer-drop/${block}`).nextFloat() < policy.rate

export const layerDrop: DepthCompute<LayerDrop> = {
  forward: (policy, x0, ctx) => {
    const [b, t] = x0.shape
    const { costs, trace } = ctx
    trace?.enter(b * t, costs.base + costs.head)
    let x = x0
    costs.blocks.forEach((cost, i) => {
      if (ctx.training && dropped(policy, ctx.seed, i)) return
      x = ctx.run(i, x)
      trace?.block(i, b * t, cost.full)
    })
    return { logits: ctx.lmHead(ctx.finalNorm(x)).reshape([b, t, ctx.spec.vocab]) as tf.Tensor3D }
  },
}
