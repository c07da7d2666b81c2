/**
 * The model DSL: combinators that build plain, immutable, JSON-serialisable model specs, and
 * everything that reads them without computing (decoding and checks, parameter tables,
 * counts, FLOPs, printing, hashing, diffs, variants). Nothing here loads a tensor library.
 */
export {
  activation, attention, block, decoder, depth, earlyExit, ffn, freeze, interleave, layerDrop, mixtureOfDepths, norm, posenc, residual, stack,
} from "./combinators.js"
export { gpt2, type Gpt2Options, llama, type LlamaOptions } from "./presets.js"
export { blocksOf, dimsOf, type BlockSpec, type DecoderSpec, type DepthSpec, type Layer, type Layers, type ResidualSpec, type StackSpec } from "./nodes.js"
export { decodeSpec, decodeSpecEffect, formatPath, SpecError, validateSpec } from "./decode.js"
export { blockRuns, countParams, flopsPerToken, paramCounts, paramTable, type BlockRun, type Flops, type NamedParam, type ParamCounts } from "./params.js"
export { formatCount, printSpec } from "./print.js"
export { canonicalJson, hashSpec } from "./hash.js"
export { diffSpecs, formatDiff, type Change } from "./diff.js"
export { override, replace, replaceIn, sweep, type SweepAxes } from "./vary.js"
export { chosenBlocks, keepBlocks, keptParamSource, layersOf, mapBlocks, type Which, withPolicy } from "./blocks.js"
export { type BlockCost, type DepthCosts, depthCosts, type KeyValueSplit, keyValueSplit } from "./costs.js"
export type { FfnSpec } from "./ffn.js"
export type { ActivationSpec, ActivationTag } from "./kinds/activation/index.js"
export type { AttentionKindTag, AttentionSpec } from "./kinds/attention/index.js"
export { depthPolicies, type DepthPolicy, policyModule, type PolicyTag } from "./kinds/depth/index.js"
export type { NormSpec } from "./kinds/norm/index.js"
export type { PosencSpec } from "./kinds/posenc/index.js"
