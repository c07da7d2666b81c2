import * as tf from "@tensorflow/tfjs"
import { headDimOf, QK_NORM_EPS } from "../../dsl/kinds/attention/fields.js"
import { fusedDense, fusedNorm } from "../backend/fused.js"
import type { LayerCtx, ParamView } from "../model/kind.js"
import { KvBuffer } from "./kv-buffer.js"

/** What every attention kind shares: the Q/K/V and output projections, heads, the decoding cache. */

/** Splits [B·T, H·dh] projections into heads: [B, H, T, dh]. */
export const splitHeads = (x: tf.Tensor2D, b: number, t: number, heads: number): tf.Tensor4D =>
  x.reshape([b, t, heads, x.shape[1] / heads]).transpose([0, 2, 1, 3]) as tf.Tensor4D

export const mergeHeads = (x: tf.Tensor4D): tf.Tensor2D => {
  const [b, h, t, dh] = x.shape
  return x.transpose([0, 2, 1, 3]).reshape([b * t, h * dh]) as tf.Tensor2D
}

/** x·w (+ b), then ReLU when `relu`: one fused layer where the backend has it (src/backend/fused.ts fusedDense). */
export const linear = (p: ParamView, x: tf.Tensor2D, w: string, b: string, bias: boolean, relu = false): tf.Tensor2D => {
  p.probe?.(w, x)
  const weight = p(w) as tf.Tensor2D
  const shift = bias ? p(b) : undefined
  const fused = fusedDense(x, weight, shift, relu)
  if (fused) return fused
  const y = tf.matMul(x, weight) as tf.Tensor2D
  const z = shift ? (tf.add(y, shift) as tf.Tensor2D) : y
  return relu ? tf.relu(z) : z
}

/**
 * linear(…)·scale, scaling the weight and bias where they are smaller than the product (in
 * training, a pass over a [D, D] weight each way instead of over the [B·T, D] activations).
 * The same numbers up to float32 rounding, and the same bits when the scale is a power of two
 * (head widths 4, 16, 64, 256).
 */
const scaledLinear = (p: ParamView, x: tf.Tensor2D, w: string, b: string, bias: boolean, scale: number): tf.Tensor2D => {
  const weight = p(w)
  if (x.shape[0] < weight.shape[0]!) return tf.mul(linear(p, x, w, b, bias), scale)
  const scaled = Object.assign((name: string) => (name === w || name === b ? tf.mul(p(name), scale) : p(name)), p.probe ? { probe: p.probe } : {})
  return linear(scaled, x, w, b, bias)
}

interface Heads {
  readonly heads: number
  readonly headDim?: number | undefined
  readonly bias: boolean
  readonly qkNorm?: boolean | undefined
}

/**
 * QK-norm of projections [N, H·dh]: each head's vector RMS-normalised (the lab's RMSNorm, its
 * gain 1: no learned parameter), by the fused norm where the backend has it.
 */
export const normHeads = (x: tf.Tensor2D, heads: number): tf.Tensor2D => {
  const [n, inner] = x.shape
  const dh = inner / heads
  const rows = x.reshape([n * heads, dh])
  const y = fusedNorm(rows, tf.ones([dh]), QK_NORM_EPS, false) ?? tf.mul(rows, tf.rsqrt(tf.add(tf.mean(tf.square(rows), -1, true), QK_NORM_EPS)))
  return y.reshape([n, inner]) as tf.Tensor2D
}

/**
 * q (scaled by 1/√dh), k, v [B, H, T, dh] of x, with the position scheme's rotation applied
 * unless `rotate` is false (a fused kernel rotates them itself). Under QK-norm q and k are
 * normalised first (modded-nanogpt's order: norm, then rotary), q scaled after.
 * Scaling q rather than the scores costs T·D instead of T² multiplies.
 */
export const projectQkv = (
  p: ParamView,
  x: tf.Tensor3D,
  spec: Heads,
  ctx: LayerCtx,
  names: readonly [string, string, string] = ["q", "k", "v"],
  rotate = true,
): [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D] => {
  const [b, t, d] = x.shape
  const x2 = x.reshape([b * t, d]) as tf.Tensor2D
  const [nq, nk, nv] = names
  const scale = 1 / Math.sqrt(headDimOf(spec, d))
  const qs = spec.qkNorm ? tf.mul(normHeads(linear(p, x2, `w${nq}`, `b${nq}`, spec.bias), spec.heads), scale) : scaledLinear(p, x2, `w${nq}`, `b${nq}`, spec.bias, scale)
  const ks = linear(p, x2, `w${nk}`, `b${nk}`, spec.bias)
  let q = splitHeads(qs as tf.Tensor2D, b, t, spec.heads)
  let k = splitHeads(spec.qkNorm ? normHeads(ks, spec.heads) : ks, b, t, spec.heads)
  const v = splitHeads(linear(p, x2, `w${nv}`, `b${nv}`, spec.bias), b, t, spec.heads)
  if (rotate && ctx.position.queryKey) [q, k] = ctx.position.queryKey(q, k, ctx.offset, ctx.offset)
  return [q, k, v]
}

/** Merges heads [B, H, T, dh] and applies the output projection: [B, T, D]. */
export const project = (p: ParamView, y: tf.Tensor4D, bias: boolean): tf.Tensor3D => {
  const [b, , t] = y.shape
  const out = linear(p, mergeHeads(y), "wo", "bo", bias)
  return out.reshape([b, t, out.shape[1]]) as tf.Tensor3D
}

/** Appends new keys/values to the decoding cache and returns the full key/value sequences. */
export const extendCache = (ctx: LayerCtx, k: tf.Tensor4D, v: tf.Tensor4D): [tf.Tensor4D, tf.Tensor4D] => {
  const slot = ctx.kv
  if (slot === undefined) return [k, v]
  const [b, h, t] = k.shape
  const capacity = Math.max(t, ctx.dims.context)
  slot.k ??= new KvBuffer(b, h, k.shape[3], capacity)
  slot.v ??= new KvBuffer(b, h, v.shape[3], capacity)
  slot.k.append(k)
  slot.v.append(v)
  return [slot.k.tensor(), slot.v.tensor()]
}
