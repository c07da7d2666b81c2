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
 * decay; 1 for RoPE). Dimensions from 2·half on pass through.
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
    const cos = new Float32Array(t * half)
    const sin = new Float32Array(t * half)
    for (let i = 0; i < t; i++) {
      const pos = offset + i
      for (let j = 0; j < half; j++) {
        // Angles in float64: positions times θ_j lose precision in float32 at long lengths.
        const angle = pos * base ** (-j / half)
        const s = scale(pos, j)
        cos[i * half + j] = Math.cos(angle) * s
        sin[i * half + j] = Math.sin(angle) * s
      }
    }
    const c = tf.tensor2d(cos, [t, half])
    const s = tf.tensor2d(sin, [t, half])
    const x1 = tf.slice(x, [0, 0, 0, 0], [b, h, t, half])
    const x2 = tf.slice(x, [0, 0, 0, half], [b, h, t, half])
    const parts = [tf.sub(tf.mul(x1, c), tf.mul(x2, s)), tf.add(tf.mul(x2, c), tf.mul(x1, s))]
    if (2 * half < dh) parts.push(tf.slice(x, [0, 0, 0, 2 * half], [b, h, t, dh - 2 * half]))
    return tf.concat(parts, 3) as tf.Tensor4D
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
