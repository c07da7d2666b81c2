import * as tf from "@tensorflow/tfjs"
import { Schema } from "effect"
import { type AttentionBaseOptions, attentionDefaults, attentionFields } from "./fields.js"
import type { AttentionKind, Dims, LayerCtx, ParamView } from "../model/kind.js"

/** Dense causal multi-head attention (Vaswani et al. 2017), as in GPT-2. */
const schema = Schema.Struct({ ...attentionFields, kind: Schema.Literal("full") })
export type FullAttention = typeof schema.Type

export type FullOptions = AttentionBaseOptions

export const make = (o: FullOptions): FullAttention => ({ ...attentionDefaults(o), kind: "full" })

/** Splits [B, T, D] projections into heads: [B, H, T, D/H]. */
export const splitHeads = (x: tf.Tensor2D, b: number, t: number, heads: number): tf.Tensor4D =>
  x.reshape([b, t, heads, x.shape[1] / heads]).transpose([0, 2, 1, 3]) as tf.Tensor4D

export const mergeHeads = (x: tf.Tensor4D): tf.Tensor2D => {
  const [b, h, t, dh] = x.shape
  return x.transpose([0, 2, 1, 3]).reshape([b * t, h * dh]) as tf.Tensor2D
}

export const linear = (p: ParamView, x: tf.Tensor2D, w: string, b: string, bias: boolean): tf.Tensor2D => {
  const y = tf.matMul(x, p(w) as tf.Tensor2D) as tf.Tensor2D
  return bias ? (tf.add(y, p(b)) as tf.Tensor2D) : y
}

/** Causal additive mask for tq queries ending at the last of tk keys: 0 where visible, -1e9 where not. */
export const causalMask = (tq: number, tk: number): tf.Tensor2D =>
  tf.tidy(() => {
    const visible = tf.linalg.bandPart(tf.ones([tq, tk]), -1, tk - tq)
    return tf.mul(tf.sub(1, visible), -1e9) as tf.Tensor2D
  })

/** Appends new keys/values to the decoding cache and returns the full key/value sequences. */
export const extendCache = (ctx: LayerCtx, k: tf.Tensor4D, v: tf.Tensor4D): [tf.Tensor4D, tf.Tensor4D] => {
  const slot = ctx.kv
  if (slot === undefined) return [k, v]
  const kAll = slot.k === undefined ? k : (tf.concat([slot.k, k], 2) as tf.Tensor4D)
  const vAll = slot.v === undefined ? v : (tf.concat([slot.v, v], 2) as tf.Tensor4D)
  slot.k?.dispose()
  slot.v?.dispose()
  slot.k = tf.keep(kAll)
  slot.v = tf.keep(vAll)
  return [kAll, vAll]
}

const apply = (p: ParamView, x: tf.Tensor3D, spec: FullAttention, ctx: LayerCtx): tf.Tensor3D => {
  const [b, t, d] = x.shape
  const h = spec.heads
  const x2 = x.reshape([b * t, d]) as tf.Tensor2D
  // Scaling q rather than the scores costs T·D instead of T² multiplies.
  let q = splitHeads(tf.mul(linear(p, x2, "wq", "bq", spec.bias), 1 / Math.sqrt(d / h)), b, t, h)
  let k = splitHeads(linear(p, x2, "wk", "bk", spec.bias), b, t, h)
  const v0 = splitHeads(linear(p, x2, "wv", "bv", spec.bias), b, t, h)
  if (ctx.position.queryKey) [q, k] = ctx.position.queryKey(q, k, ctx.offset, ctx.offset)
  const [kAll, v] = extendCache(ctx, k, v0)
  const tk = kAll.shape[2]
  let scores: tf.Tensor = tf.add(tf.matMul(q, kAll, false, true), causalMask(t, tk))
  if (ctx.position.scoreBias) scores = tf.add(scores, ctx.position.scoreBias(h, t, tk, ctx.offset, ctx.offset + t - tk))
  const weights = ctx.dropout(tf.softmax(scores), spec.dropout) as tf.Tensor4D
  const y = mergeHeads(tf.matMul(weights, v))
  return linear(p, y, "wo", "bo", spec.bias).reshape([b, t, d]) as tf.Tensor3D
}

export const projectionParams = (width: number, dims: Dims, bias: boolean) => {
  const std = 0.02
  // GPT-2 scales the init of projections that write into the residual stream by 1/sqrt(2L).
  const outStd = std / Math.sqrt(2 * dims.layers)
  const w = (s: number) => ({ shape: [dims.width, width], init: { kind: "normal", std: s }, decay: true }) as const
  const zero = { shape: [width], init: { kind: "zeros" }, decay: false } as const
  return {
    wq: w(std),
    wk: w(std),
    wv: w(std),
    wo: { shape: [width, dims.width], init: { kind: "normal", std: outStd }, decay: true } as const,
    ...(bias ? { bq: zero, bk: zero, bv: zero, bo: { ...zero, shape: [dims.width] } } : {}),
  }
}

export const full: AttentionKind<FullAttention> & { make: typeof make } = {
  schema,
  make,
  check: (spec, dims) =>
    dims.width % spec.heads === 0 ? [] : [{ path: ["heads"], message: `${spec.heads} does not divide width ${dims.width}` }],
  params: (spec, dims) => projectionParams(dims.width, dims, spec.bias),
  // QKᵀ and AV: 2·T·D multiply-adds each per token over the whole context.
  flops: (_spec, dims) => 4 * dims.context * dims.width,
  label: (spec) => `full(h=${spec.heads})`,
  causal: () => true,
  apply,
}
