import { Schema } from "effect"
import { PositiveInt, PositiveNumber } from "../../fields.js"
import type { Issue, PosencDescription } from "../../kind.js"

/**
 * Rotary position embedding, RoPE (Su et al. 2021, "RoFormer"): q and k at position n are
 * rotated pairwise by the angles n·θ_j, θ_j = base^(-2j/d), so q·k depends on the positions
 * only through their difference. Pairs follow the GPT-NeoX/llama "rotate_half" convention
 * (dimension j pairs with j + d/2, not 2j with 2j+1); the two conventions differ by a fixed
 * permutation of the head dimension, which the projections absorb. `dims` rotates only the
 * first `dims` dimensions of each head (GPT-NeoX's partial rotary), with d = dims in θ_j;
 * the rest pass through. Without `dims` the whole head dimension of each layer is rotated.
 */
const schema = Schema.Struct({
  op: Schema.Literal("posenc"),
  kind: Schema.Literal("rope"),
  base: PositiveNumber,
  dims: Schema.optionalKey(PositiveInt.check(Schema.isMultipleOf(2))),
})
export type Rope = typeof schema.Type

/** The rotated dimensions must be an even number within the head dimension. */
export const checkRotaryDims = (rotated: number | undefined, headDim: number): Issue[] => {
  if (!Number.isInteger(headDim)) return [] // the attention node reports an uneven split
  if (rotated === undefined) return headDim % 2 === 0 ? [] : [{ path: [], message: `head dim ${headDim} is odd; rotary pairs need an even one` }]
  return rotated <= headDim ? [] : [{ path: ["dims"], message: `${rotated} rotary dims exceed the head dim ${headDim}` }]
}

export const rope: PosencDescription<Rope> & {
  make: (o?: { base?: number; dims?: number }) => Rope
  checkHeads: (spec: Rope, heads: number, headDim: number) => Issue[]
} = {
  schema,
  make: (o = {}) => ({ op: "posenc", kind: "rope", base: o.base ?? 10000, ...(o.dims === undefined ? {} : { dims: o.dims }) }),
  params: () => ({}),
  flops: () => 0,
  label: (spec) => (spec.dims === undefined ? "rope" : `rope(dims=${spec.dims})`),
  checkHeads: (spec, _heads, headDim) => checkRotaryDims(spec.dims, headDim),
}
