import type * as tf from "@tensorflow/tfjs"
import type { AttentionSpec } from "../../dsl/kinds/attention/index.js"
import { maxDilation } from "../../dsl/kinds/attention/sliding.js"
import { attentionFusion, fusedAttention } from "../backend/fused.js"
import type { LayerCtx } from "../model/kind.js"

/**
 * Causal attention of a whole sequence (no decoding cache) by the backend's fused kernel
 * (src/backend/fused.ts), where it computes what the composed ops would: no dropout on the
 * weights while training (its random mask is tfjs's to draw), a position bias that is none
 * or ALiBi's, and a rotation of q and k that is none or one the kernel applies (RoPE, xPos).
 * The caller asks first, since a rotation the kernel applies is not applied to q and k before.
 */
export const fusedCausalApplies = (ctx: LayerCtx, rate: number): boolean => {
  const { scoreBias, distanceSlopes, queryKey, rotation } = ctx.position
  return (
    attentionFusion() &&
    ctx.kv === undefined &&
    !(ctx.training && rate > 0) &&
    (scoreBias === undefined || distanceSlopes !== undefined) &&
    (queryKey === undefined || rotation !== undefined)
  )
}

/** The fused attention of q, k, v [B, H, T, dh], q and k not yet rotated; query i sees keys j with 0 ≤ i − j ≤ span. */
export const fusedCausal = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, ctx: LayerCtx, span?: number): tf.Tensor4D => {
  const [, h, t, dh] = q.shape
  const { distanceSlopes, rotation } = ctx.position
  const out = fusedAttention(q, k, v, { span, slopes: distanceSlopes?.(h), rotation: rotation?.(t, dh, ctx.offset) })
  if (out === undefined) throw new Error("fused attention: the backend has no kernel; ask fusedCausalApplies first")
  return out
}

/** Kinds whose whole-sequence pattern is one contiguous span of keys per query: dense, and undilated windows without global tokens. */
export const fusableKind = (spec: AttentionSpec): boolean => spec.kind === "full" || (spec.kind === "sliding-window" && maxDilation(spec) === 1)
