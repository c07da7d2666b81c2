import * as tf from "@tensorflow/tfjs"
import { Schema } from "effect"
import type { PosencKind } from "../model/kind.js"

/**
 * Fixed sinusoidal positions added to the embeddings (Vaswani et al. 2017, §3.5):
 * PE(n, 2i) = sin(n / 10000^(2i/d)), PE(n, 2i+1) = cos(n / 10000^(2i/d)), interleaved as in
 * the paper's formula. `scaleEmbeddings` multiplies the token embeddings by √d first, as the
 * paper does (§3.4): with embeddings initialised at std 0.02 the unit-amplitude table would
 * otherwise swamp the token identity.
 */
const schema = Schema.Struct({
  op: Schema.Literal("posenc"),
  kind: Schema.Literal("sinusoidal"),
  scaleEmbeddings: Schema.Boolean,
})
type Sinusoidal = typeof schema.Type

/** The table [t, d] for positions offset..offset+t-1. */
export const sinusoidTable = (t: number, d: number, offset: number): Float32Array => {
  const table = new Float32Array(t * d)
  for (let i = 0; i < t; i++) {
    for (let k = 0; k < d; k++) {
      const angle = (offset + i) / 10000 ** ((k - (k % 2)) / d)
      table[i * d + k] = k % 2 === 0 ? Math.sin(angle) : Math.cos(angle)
    }
  }
  return table
}

export const sinusoidal: PosencKind<Sinusoidal> & { make: (o?: { scaleEmbeddings?: boolean }) => Sinusoidal } = {
  schema,
  make: (o = {}) => ({ op: "posenc", kind: "sinusoidal", scaleEmbeddings: o.scaleEmbeddings ?? true }),
  params: () => ({}),
  flops: () => 0,
  label: (spec) => (spec.scaleEmbeddings ? "sinusoidal" : "sinusoidal(unscaled)"),
  embed: (_p, x, spec, offset) =>
    tf.tidy(() => {
      const [, t, d] = x.shape
      const tokens = spec.scaleEmbeddings ? tf.mul(x, Math.sqrt(d)) : x
      return tf.add(tokens, tf.tensor2d(sinusoidTable(t, d, offset), [t, d])) as tf.Tensor3D
    }),
}
