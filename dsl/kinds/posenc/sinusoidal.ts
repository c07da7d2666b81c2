import { Schema } from "effect"
import type { PosencDescription } from "../../kind.js"

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
export type Sinusoidal = typeof schema.Type

export const sinusoidal: PosencDescription<Sinusoidal> & { make: (o?: { scaleEmbeddings?: boolean }) => Sinusoidal } = {
  schema,
  make: (o = {}) => ({ op: "posenc", kind: "sinusoidal", scaleEmbeddings: o.scaleEmbeddings ?? true }),
  params: () => ({}),
  flops: () => 0,
  label: (spec) => (spec.scaleEmbeddings ? "sinusoidal" : "sinusoidal(unscaled)"),
}
