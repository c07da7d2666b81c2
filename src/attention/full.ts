import * as tf from "@tensorflow/tfjs"
import type { FullAttention } from "../../dsl/kinds/attention/full.js"
import { fusedCausalSoftmax } from "../backend/fused.js"
import type { AttentionCompute, LayerCtx, ParamView } from "../model/kind.js"
import { fusedCausal, fusedCausalApplies } from "./fused.js"
import { extendCache, project, projectQkv } from "./projection.js"

/** Dense causal multi-head attention (Vaswani et al. 2017), as in GPT-2. */

/** Causal additive mask for tq queries ending at the last of tk keys: 0 where visible, -1e9 where not. */
export const causalMask = (tq: number, tk: number): tf.Tensor2D =>
  tf.tidy(() => {
    const visible = tf.linalg.bandPart(tf.ones([tq, tk]), -1, tk - tq)
    return tf.mul(tf.sub(1, visible), -1e9) as tf.Tensor2D
  })

const apply = (p: ParamView, x: tf.Tensor3D, spec: FullAttention, ctx: LayerCtx): tf.Tensor3D => {
  const t = x.shape[1]
  const fused = fusedCausalApplies(ctx, spec.dropout)
  const [q, k, v0] = projectQkv(p, x, spec, ctx, undefined, !fused)
  if (fused) return project(p, fusedCausal(q, k, v0, ctx), spec.bias)
  const [kAll, v] = extendCache(ctx, k, v0)
  const tk = kAll.shape[2]
  const qk = tf.matMul(q, kAll, false, true)
  const bias = ctx.position.scoreBias?.(spec.heads, t, tk, ctx.offset, ctx.offset + t - tk)
  const biased = (scores: tf.Tensor): tf.Tensor => (bias ? tf.add(scores, bias) : scores)
  // A single query comes after every key it is given, so it needs no mask.
  const masked = t === 1 ? undefined : fusedCausalSoftmax(biased(qk))
  const weights = ctx.dropout(masked ?? tf.softmax(biased(t === 1 ? qk : tf.add(qk, causalMask(t, tk)))), spec.dropout) as tf.Tensor4D
  return project(p, tf.matMul(weights, v) as tf.Tensor4D, spec.bias)
}

export const full: AttentionCompute<FullAttention> = { apply }
