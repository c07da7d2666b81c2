import { canonicalJson } from "./hash.js"
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
export const layersOf = (blocks: ReadonlyArray<BlockSpec>): Layers => {
  if (blocks.length === 0) throw new Error("a model needs at least one block")
  const first = canonicalJson(blocks[0])
  return blocks.every((b) => canonicalJson(b) === first) ? { op: "depth", n: blocks.length, block: blocks[0]! } : { op: "stack", blocks: [...blocks] }
}

/** The chosen blocks replaced by `f(block, index)`; the others unchanged. */
export const mapBlocks = (spec: DecoderSpec, which: Which, f: (block: BlockSpec, index: number) => BlockSpec): DecoderSpec => {
  const blocks = blocksOf(spec.layers)
  const chosen = selector(which, blocks.length)
  return { ...spec, layers: layersOf(blocks.map((b, i) => (chosen(i, b) ? f(b, i) : b))) }
}

/** Only the chosen blocks, in order (e.g. every other block for a shallower model). */
export const keepBlocks = (spec: DecoderSpec, which: Which): DecoderSpec => {
  const blocks = blocksOf(spec.layers)
  const chosen = selector(which, blocks.length)
  return { ...spec, layers: layersOf(blocks.filter((b, i) => chosen(i, b))) }
}
