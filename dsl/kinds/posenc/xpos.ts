import { Schema } from "effect"
import { PositiveNumber } from "../../fields.js"
import type { Issue, PosencDescription } from "../../kind.js"
import { checkRotaryDims } from "./rope.js"

/**
 * xPos (Sun et al. 2022, "A Length-Extrapolatable Transformer"): RoPE whose pair j is also
 * scaled by ζ_j^(n/scaleBase) in the query at position n and by ζ_j^(-m/scaleBase) in the
 * key at m, ζ_j = (2j/d + γ)/(1 + γ) with γ = 0.4, so the score decays as ζ_j^((n-m)/scaleBase)
 * with distance. θ_j and ζ_j follow the torchscale reference; the rotation uses RoPE's
 * rotate_half pairing.
 */
const schema = Schema.Struct({
  op: Schema.Literal("posenc"),
  kind: Schema.Literal("xpos"),
  base: PositiveNumber,
  scaleBase: PositiveNumber,
})
export type XPos = typeof schema.Type

export const xpos: PosencDescription<XPos> & {
  make: (o?: { base?: number; scaleBase?: number }) => XPos
  checkHeads: (spec: XPos, heads: number, headDim: number) => Issue[]
} = {
  schema,
  make: (o = {}) => ({ op: "posenc", kind: "xpos", base: o.base ?? 10000, scaleBase: o.scaleBase ?? 512 }),
  params: () => ({}),
  flops: () => 0,
  label: () => "xpos",
  checkHeads: (_spec, _heads, headDim) => checkRotaryDims(undefined, headDim),
}
