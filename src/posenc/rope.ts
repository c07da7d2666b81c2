import * as tf from "@tensorflow/tfjs"
import type { Rope } from "../../dsl/kinds/posenc/rope.js"
import type { PosencCompute } from "../model/kind.js"

/**
 * cos and sin [t, dh] for positions offset.. of rotate_half pairs (j, j + half), j < half, by
 * the angles pos·base^(-j/half), each multiplied by scale(pos, j) (xPos's decay; 1 for RoPE);
 * dimensions from 2·half on pass through (cos 1, sin 0).
 */
export const rotationTables = (
  offset: number,
  t: number,
  dh: number,
  half: number,
  base: number,
  scale: (pos: number, j: number) => number = () => 1,
): { cos: Float32Array; sin: Float32Array } => {
  const cos = new Float32Array(t * dh)
  const sin = new Float32Array(t * dh)
  for (let i = 0; i < t; i++) {
    const pos = offset + i
    for (let j = 0; j < half; j++) {
      // Angles in float64: positions times θ_j lose precision in float32 at long lengths.
      const angle = pos * base ** (-j / half)
      const s = scale(pos, j)
      cos[i * dh + j] = cos[i * dh + j + half] = Math.cos(angle) * s
      sin[i * dh + j] = sin[i * dh + j + half] = Math.sin(angle) * s
    }
    for (let j = 2 * half; j < dh; j++) cos[i * dh + j] = 1
  }
  return { cos, sin }
}

/**
 * Rotates x [B, H, T, dh], first position `offset`, by rotationTables. Written as
 * x·cos + (x·R)·sin with R the fixed signed permutation of rotate_half, so it is one small
 * matmul and elementwise ops: slicing and concatenating the head dimension instead costs far
 * more in tfjs, forward and backward.
 */
export const rotateHalf = (
  x: tf.Tensor4D,
  offset: number,
  half: number,
  base: number,
  scale: (pos: number, j: number) => number = () => 1,
): tf.Tensor4D =>
  tf.tidy(() => {
    const [b, h, t, dh] = x.shape
    const { cos, sin } = rotationTables(offset, t, dh, half, base, scale)
    // (x·R)[j] = −x[j + half] and (x·R)[j + half] = x[j] for j < half; zero on pass-through dims.
    const r = new Float32Array(dh * dh)
    for (let j = 0; j < half; j++) {
      r[(j + half) * dh + j] = -1
      r[j * dh + j + half] = 1
    }
    const rotated = tf.matMul(x.reshape([b * h * t, dh]), tf.tensor2d(r, [dh, dh])).reshape([b, h, t, dh])
    return tf.add(tf.mul(x, tf.tensor2d(cos, [t, dh])), tf.mul(rotated, tf.tensor2d(sin, [t, dh]))) as tf.Tensor4D
  })

/** The four tables of a rotation as PositionHooks.rotation gives them: queries' cos and sin, then keys'. */
export const queryKeyTables = (
  offset: number,
  t: number,
  dh: number,
  half: number,
  base: number,
  qScale?: (pos: number, j: number) => number,
  kScale?: (pos: number, j: number) => number,
): Float32Array => {
  const q = rotationTables(offset, t, dh, half, base, qScale)
  const k = kScale === undefined ? q : rotationTables(offset, t, dh, half, base, kScale)
  const tables = new Float32Array(4 * t * dh)
  ;[q.cos, q.sin, k.cos, k.sin].forEach((table, i) => tables.set(table, i * t * dh))
  return tables
}

/** Rotates each layer's whole head dimension, or its first `dims`. */
export const rope: PosencCompute<Rope> = {
  hooks: (_p, spec) => {
    const half = (dh: number): number => {
      const rotated = spec.dims ?? dh
      if (rotated > dh || rotated % 2 !== 0) throw new Error(`rope: cannot rotate ${rotated} of ${dh} head dims`)
      return rotated / 2
    }
    return {
      queryKey: (q, k, qOffset, kOffset) => [rotateHalf(q, qOffset, half(q.shape[3]), spec.base), rotateHalf(k, kOffset, half(q.shape[3]), spec.base)],
      rotation: (t, dh, offset) => ({ half: half(dh), tables: queryKeyTables(offset, t, dh, half(dh), spec.base) }),
    }
  },
}
