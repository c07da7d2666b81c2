import { withPolicy } from "./blocks.js"
import type { Dims } from "./kind.js"
import { type AttentionSpec, attentionModule } from "./kinds/attention/index.js"
import { type BlockSpec, blocksOf, type DecoderSpec, dimsOf, type Layer, type ResidualSpec } from "./nodes.js"
import { flopsPerToken, isMatmul, layerDeclared, layerExtraFlops, size } from "./params.js"

/**
 * The forward FLOPs per token of each part of a decoder, counted as `flopsPerToken` counts
 * them, so that a depth policy's spent compute can be summed from the parts a token ran:
 * base + head + Σ blocks' full cost is the nominal forward count of the decoder without its
 * policy.
 */
export interface BlockCost {
  /** The whole block. */
  readonly full: number
  /**
   * Its layers up to and including the last one that holds attention (`prefixLayers` of them):
   * what a token that has left the stack early still computes in this block, so that later
   * tokens find its keys and values.
   */
  readonly prefix: number
  readonly prefixLayers: number
  /**
   * Set where the block's attention can take queries from some positions only (`keyValueSplit`):
   * what a token that has left computes in this block instead of the prefix when no cache
   * keeps keys and values, only its keys and values (the layers before the attention, and
   * its K and V projections).
   */
  readonly keyValues?: number
  /** The same when its query attends too (a kernel over every row; its output dropped): keyValues plus the attention's own work. */
  readonly attendedKeyValues?: number
}

export interface DepthCosts {
  /** Outside the blocks and the LM head (the position scheme's own work). */
  readonly base: number
  /** The LM head, 2·width·vocab (an exit head costs the same). */
  readonly head: number
  readonly blocks: ReadonlyArray<BlockCost>
}

const hasAttention = (layer: Layer): boolean => layer.op === "attention" || (layer.op === "residual" && layer.body.some(hasAttention))

/** 2 per weight of the layer's own matmuls (model-wide ones are counted once, in base) plus its extra work. */
const layerFlops = (layer: Layer, dims: Dims): number =>
  2 * layerDeclared(layer, dims, "").filter((d) => !d.shared && isMatmul(d.param.decl)).reduce((s, d) => s + size(d.param.decl), 0) + layerExtraFlops(layer, dims)

/**
 * Where a block lets positions compute only keys and values while others run it: its one
 * attention is in its first layer, of a kind that takes queries from some positions only
 * (its description's `keyValues`), bare (`at` 0, no `residual`) or at index `at` of the body
 * of `residual` after layers without attention. Otherwise undefined: such positions run the
 * prefix.
 */
export interface KeyValueSplit {
  readonly attention: AttentionSpec
  readonly residual?: ResidualSpec
  readonly at: number
}

export const keyValueSplit = (block: BlockSpec): KeyValueSplit | undefined => {
  const [first, ...rest] = block.layers
  if (first === undefined || rest.some(hasAttention)) return undefined
  const splits = (a: AttentionSpec) => attentionModule(a).keyValues !== undefined
  if (first.op === "attention") return splits(first) ? { attention: first, at: 0 } : undefined
  if (first.op !== "residual") return undefined
  const at = first.body.findIndex(hasAttention)
  const attention = first.body[at]
  if (attention?.op !== "attention" || !splits(attention) || first.body.slice(at + 1).some(hasAttention)) return undefined
  return { attention, residual: first, at }
}

const blockCost = (block: BlockSpec, dims: Dims): BlockCost => {
  const flops = block.layers.map((l) => layerFlops(l, dims))
  const prefixLayers = block.layers.reduce((last, l, i) => (hasAttention(l) ? i + 1 : last), 0)
  const cost = { full: flops.reduce((a, b) => a + b, 0), prefix: flops.slice(0, prefixLayers).reduce((a, b) => a + b, 0), prefixLayers }
  const split = keyValueSplit(block)
  if (split === undefined) return cost
  const before = split.residual?.body.slice(0, split.at) ?? []
  const kind = attentionModule(split.attention)
  const keyValues = before.reduce((s, l) => s + layerFlops(l, dims), 0) + kind.keyValues!(split.attention, dims)
  return { ...cost, keyValues, attendedKeyValues: keyValues + kind.flops(split.attention, dims) }
}

export const depthCosts = (spec: DecoderSpec): DepthCosts => {
  const dims = dimsOf(spec)
  const blocks = blocksOf(spec.layers).map((b) => blockCost(b, dims))
  const head = 2 * dims.width * dims.vocab
  const base = flopsPerToken(withPolicy(spec, undefined)).forward - head - blocks.reduce((s, b) => s + b.full, 0)
  return { base, head, blocks }
}
