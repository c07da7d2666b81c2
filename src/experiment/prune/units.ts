import type { FfnSpec } from "../../../dsl/ffn.js"
import type { AttentionSpec } from "../../../dsl/kinds/attention/index.js"
import { layersOf } from "../../../dsl/blocks.js"
import { type BlockSpec, blocksOf, type DecoderSpec, type Layer } from "../../../dsl/nodes.js"
import { blockChildNames, childNames } from "../../../dsl/params.js"

/**
 * The attention and FFN nodes of a model, each with the block it sits in and the prefix of
 * its parameters (`blocks.2.0.attention`): what structured pruning removes heads and
 * neurons from. A block may hold several of either (a custom `block([...])`).
 */
export interface Unit<S> {
  readonly block: number
  readonly prefix: string
  readonly spec: S
}

const leaves = (spec: DecoderSpec): Array<Unit<Layer>> =>
  blocksOf(spec.layers).flatMap((block, i) => {
    const walk = (layers: ReadonlyArray<Layer>, names: ReadonlyArray<string>, prefix: string): Array<Unit<Layer>> =>
      layers.flatMap((layer, j) =>
        layer.op === "residual" ? walk(layer.body, childNames(layer.body), `${prefix}.${names[j]}`) : [{ block: i, prefix: `${prefix}.${names[j]}`, spec: layer }],
      )
    return walk(block.layers, blockChildNames(block.layers), `blocks.${i}`)
  })

export const attentionUnits = (spec: DecoderSpec): Array<Unit<AttentionSpec>> =>
  leaves(spec).filter((u): u is Unit<AttentionSpec> => u.spec.op === "attention")

export const ffnUnits = (spec: DecoderSpec): Array<Unit<FfnSpec>> => leaves(spec).filter((u): u is Unit<FfnSpec> => u.spec.op === "ffn")

/** The model with each leaf replaced by `f(leaf, prefix)`; parameter names are unchanged. */
export const mapLeaves = (spec: DecoderSpec, f: (layer: Layer, prefix: string) => Layer): DecoderSpec => {
  const mapBlock = (block: BlockSpec, i: number): BlockSpec => {
    const walk = (layers: ReadonlyArray<Layer>, names: ReadonlyArray<string>, prefix: string): Layer[] =>
      layers.map((layer, j) =>
        layer.op === "residual" ? { ...layer, body: walk(layer.body, childNames(layer.body), `${prefix}.${names[j]}`) } : f(layer, `${prefix}.${names[j]}`),
      )
    return { ...block, layers: walk(block.layers, blockChildNames(block.layers), `blocks.${i}`) }
  }
  return { ...spec, layers: layersOf(blocksOf(spec.layers).map(mapBlock)) }
}
