import type * as tf from "@tensorflow/tfjs"
import type { AttentionSpec } from "../../dsl/kinds/attention/index.js"
import { maxDilation } from "../../dsl/kinds/attention/sliding.js"
import { fusedAttention } from "../backend/fused.js"
import type { LayerCtx } from "../model/kind.js"

/**
 * Causal attention of a whole sequence (no decoding cache) by the backend's fused kernel
 * (src/backend/fused.ts), where it computes what the composed ops would: no dropout on the
 * weights while training (its random mask is tfjs's to draw) and a position bias that is
 * none or ALiBi's. Query i sees keys j with 0 ≤ i − j ≤ span. Undefined where it does not
 * apply: the caller composes the ops then.
 */
export const fusedCausal = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, ctx: LayerCtx, rate: number, span?: number): tf.Tensor4D | undefined => {
  if (ctx.kv !== undefined || (ctx.training && rate > 0)) return undefined
  const { scoreBias, distanceSlopes } = ctx.position
  if (scoreBias !== undefined && distanceSlopes === undefined) return undefined
  return fusedAttention(q, k, v, { span, slopes: distanceSlopes?.(q.shape[1]) })
}

/** Kinds whose whole-sequence pattern is one contiguous span of keys per query: dense, and undilated windows without global tokens. */
export const fusableKind = (spec: AttentionSpec): boolean => spec.kind === "full" || (spec.kind === "sliding-window" && maxDilation(spec) === 1)
