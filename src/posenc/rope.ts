import * as tf from "@tensorflow/tfjs"
import { Schema } from "effect"
import { PositiveInt, PositiveNumber } from "../model/fields.js"
import type { Issue, PosencKind } from "../model/kind.js"

/**
 * Rotary position embedding, RoPE (Su et al. 2021, "RoFormer"): q and k at position n are
 * rotated pairwise by the angles n·θ_j, θ_j = base^(-2j/d), so q·k depends on the positions
 * only through their difference. Pairs follow the GPT-NeoX/llama "rotate_half" convention
 * (dimension j pairs with j + d/2, not 2j with 2j+1); the two conventions differ by a fixed
 * permutation of the head dimension, which the projections absorb. `dims` rotates only the
 * first `dims` dimensions of each head (GPT-NeoX's partial rotary), with d = dims in θ_j;
 * the rest pass through. Without `dims` the whole head dimension is rotated.
 */
const schema = Schema.Struct({
  op: Schema.Literal("posenc"),
  kind: Schema.Literal("rope"),
  base: PositiveNumber,
  dims: Schema.optionalKey(PositiveInt.check(Schema.isMultipleOf(2))),
})
type Rope = typeof schema.Type

/**
 * Rotates x [B, H, T, dh], first position `offset`, in rotate_half pairs (j, j + half) for
 * j < half by the angles pos·base^(-j/half), multiplying pair j by scale(pos, j) (xPos's
 * decay; 1 for RoPE). Dimensions from 2·half on pass through. Written as
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
    // (x·R)[j] = −x[j + half] and (x·R)[j + half] = x[j] for j < half; zero on pass-through dims.
    const r = new Float32Array(dh * dh)
    for (let j = 0; j < half; j++) {
      r[(j + half) * dh + j] = -1
      r[j * dh + j + half] = 1
    }
    const rotated = tf.matMul(x.reshape([b * h * t, dh]), tf.tensor2d(r, [dh, dh])).reshape([b, h, t, dh])
    return tf.add(tf.mul(x, tf.tensor2d(cos, [t, dh])), tf.mul(rotated, tf.tensor2d(sin, [t, dh]))) as tf.Tensor4D
  })

/** The rotated dimensions must be an even number within the head dimension. */
export const checkRotaryDims = (rotated: number | undefined, heads: number, width: number): Issue[] => {
  if (width % heads !== 0) return [] // the attention node reports this
  const headDim = width / heads
  if (rotated === undefined) return headDim % 2 === 0 ? [] : [{ path: [], message: `head dim ${headDim} (width ${width} / ${heads} heads) is odd; rotary pairs need an even one` }]
  return rotated <= headDim ? [] : [{ path: ["dims"], message: `${rotated} rotary dims exceed the head dim ${headDim} (width ${width} / ${heads} heads)` }]
}

export const rope: PosencKind<Rope> & {
  make: (o?: { base?: number; dims?: number }) => Rope
  checkHeads: (spec: Rope, heads: number, width: number) => Issue[]
} = {
  schema,
  make: (o = {}) => ({ op: "posenc", kind: "rope", base: o.base ?? 10000, ...(o.dims === undefined ? {} : { dims: o.dims }) }),
  params: () => ({}),
  flops: () => 0,
  label: (spec) => (spec.dims === undefined ? "rope" : `rope(dims=${spec.dims})`),
  checkHeads: (spec, heads, width) => checkRotaryDims(spec.dims, heads, width),
  hooks: (_p, spec) => ({
    queryKey: (q, k, qOffset, kOffset) => {
      const rotated = spec.dims ?? q.shape[3]
      if (rotated > q.shape[3] || rotated % 2 !== 0) throw new Error(`rope: cannot rotate ${rotated} of ${q.shape[3]} head dims`)
      return [rotateHalf(q, qOffset, rotated / 2, spec.base), rotateHalf(k, kOffset, rotated / 2, spec.base)]
    },
  }),
}
