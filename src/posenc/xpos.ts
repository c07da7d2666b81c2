import { Schema } from "effect"
import { PositiveNumber } from "../model/fields.js"
import type { Issue, PosencKind } from "../model/kind.js"
import { checkRotaryDims, rotateHalf } from "./rope.js"

/**
 * xPos (Sun et al. 2022, "A Length-Extrapolatable Transformer"): RoPE whose pair j is also
 * scaled by ζ_j^(n/scaleBase) in the query at position n and by ζ_j^(-m/scaleBase) in the
 * key at m, ζ_j = (2j/d + γ)/(1 + γ) with γ = 0.4, so the score decays as ζ_j^((n-m)/scaleBase)
 * with distance. θ_j and ζ_j follow the torchscale reference; the rotation uses RoPE's
 * rotate_half pairing. torchscale centres the exponents on the middle of the sequence for
 * range; that centre moves as decoding proceeds, which would invalidate cached keys, so
 * positions here are absolute. Only n - m reaches the score, so the result is the same.
 */
const schema = Schema.Struct({
  op: Schema.Literal("posenc"),
  kind: Schema.Literal("xpos"),
  base: PositiveNumber,
  scaleBase: PositiveNumber,
})
type XPos = typeof schema.Type

const GAMMA = 0.4

/** ζ_j for pair j of a head of dimension d. */
export const xposZeta = (j: number, d: number): number => ((2 * j) / d + GAMMA) / (1 + GAMMA)

export const xpos: PosencKind<XPos> & {
  make: (o?: { base?: number; scaleBase?: number }) => XPos
  checkHeads: (spec: XPos, heads: number, width: number) => Issue[]
} = {
  schema,
  make: (o = {}) => ({ op: "posenc", kind: "xpos", base: o.base ?? 10000, scaleBase: o.scaleBase ?? 512 }),
  params: () => ({}),
  flops: () => 0,
  label: () => "xpos",
  checkHeads: (_spec, heads, width) => checkRotaryDims(undefined, heads, width),
  hooks: (_p, spec) => ({
    queryKey: (q, k, qOffset, kOffset) => {
      const d = q.shape[3]
      if (d % 2 !== 0) throw new Error(`xpos: head dim ${d} is odd`)
      const decay = (sign: number) => (pos: number, j: number) => xposZeta(j, d) ** ((sign * pos) / spec.scaleBase)
      return [rotateHalf(q, qOffset, d / 2, spec.base, decay(1)), rotateHalf(k, kOffset, d / 2, spec.base, decay(-1))]
    },
  }),
}
