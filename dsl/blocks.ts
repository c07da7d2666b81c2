import { canonicalJson } from "./hash.js"
import type { DepthPolicy } from "./kinds/depth/index.js"
import { type BlockSpec, blocksOf, type DecoderSpec, type Layers } from "./nodes.js"

/**
 * Choosing and transforming blocks of a model: by index (`[0, 3]`) or by predicate
 * (`(i) => i % 4 === 3`, "every 4th block"). Results are specs like any other.
 */
export type Which = ReadonlyArray<number> | ((index: number, block: BlockSpec) => boolean)

const selector = (which: Which, n: number): ((i: number, b: BlockSpec) => boolean) => {
  if (typeof which === "function") return which
  const bad = which.filter((i) => !Number.isInteger(i) || i < 0 || i >= n)
  if (bad.length > 0) throw new Error(`block indices ${bad.join(", ")} are not among the ${n} blocks (0–${n - 1})`)
  const set = new Set(which)
  return (i) => set.has(i)
}

/** Equal blocks as `depth(n, block)`, differing ones as a stack: one spelling per model. */
export const layersOf = (blocks: ReadonlyArray<BlockSpec>, policy?: DepthPolicy): Layers => {
  if (blocks.length === 0) throw new Error("a model needs at least one block")
  const first = canonicalJson(blocks[0])
  const p = policy ? { policy } : {}
  return blocks.every((b) => canonicalJson(b) === first) ? { op: "depth", n: blocks.length, block: blocks[0]!, ...p } : { op: "stack", blocks: [...blocks], ...p }
}

/** The chosen blocks replaced by `f(block, index)`; the others unchanged, and so is the depth policy. */
export const mapBlocks = (spec: DecoderSpec, which: Which, f: (block: BlockSpec, index: number) => BlockSpec): DecoderSpec => {
  const blocks = blocksOf(spec.layers)
  const chosen = selector(which, blocks.length)
  return { ...spec, layers: layersOf(blocks.map((b, i) => (chosen(i, b) ? f(b, i) : b)), spec.layers.policy) }
}

/** The indices of the chosen blocks, in order. */
export const chosenBlocks = (spec: DecoderSpec, which: Which): number[] => {
  const blocks = blocksOf(spec.layers)
  const chosen = selector(which, blocks.length)
  return blocks.flatMap((b, i) => (chosen(i, b) ? [i] : []))
}

/**
 * Only the chosen blocks, in order (e.g. every other block for a shallower model). A depth
 * policy governs the whole stack it was trained on, so the result has none; `withPolicy`
 * gives it one.
 */
export const keepBlocks = (spec: DecoderSpec, which: Which): DecoderSpec => {
  const blocks = blocksOf(spec.layers)
  return { ...spec, layers: layersOf(chosenBlocks(spec, which).map((i) => blocks[i]!)) }
}

/**
 * Where a parameter of `keepBlocks(spec, which)` comes from in `spec`: block j of the result
 * is block kept[j] of the original (`blocks.1.…` ← `blocks.2.…`); other names are unchanged.
 */
export const keptParamSource = (spec: DecoderSpec, which: Which): ((name: string) => string) => {
  const kept = chosenBlocks(spec, which)
  return (name) => name.replace(/^blocks\.(\d+)\./, (_, j: string) => `blocks.${kept[Number(j)]!}.`)
}

/** The same model with another depth policy, or with none (`undefined`). */
export const withPolicy = (spec: DecoderSpec, policy: DepthPolicy | undefined): DecoderSpec => {
  const { policy: _old, ...layers } = spec.layers
  return { ...spec, layers: policy ? { ...layers, policy } : layers }
}
