import { attends, measurePattern } from "../attention/pattern.js"
import { encodePng } from "./png.js"

/** An attention node of a model spec, as the pattern measurement takes it. */
type AttentionSpec = Parameters<typeof measurePattern>[0]

/**
 * The picture of an attention pattern (query rows top to bottom, key columns left to
 * right): black where the query attends to the key, red where it attends to a later key
 * (not causal). Shared by `npm run pattern` and the report.
 */
export const patternImage = (seen: boolean[][], cell: number): { size: number; rgb: Uint8Array } => {
  const t = seen.length
  const size = t * cell
  const rgb = new Uint8Array(size * size * 3).fill(255)
  for (let i = 0; i < t; i++) {
    for (let j = 0; j < t; j++) {
      if (!seen[i]![j]) continue
      const colour = j > i ? [220, 30, 30] : [0, 0, 0]
      for (let y = i * cell; y < (i + 1) * cell; y++) for (let x = j * cell; x < (j + 1) * cell; x++) rgb.set(colour, (y * size + x) * 3)
    }
  }
  return { size, rgb }
}

/** The measured pattern of head 0 of the first layer at `context`, as a PNG of one pixel per query/key pair. */
export const patternPng = (spec: AttentionSpec, context: number): Buffer => {
  const { size, rgb } = patternImage(attends(measurePattern(spec, { context, layer: 0, head: 0 }), context), 1)
  return encodePng(size, size, rgb)
}

/**
 * Every distinct attention spec in a model, found by walking its JSON for attention nodes,
 * so it holds however the layers are arranged (depth, stack, nested blocks).
 */
export const attentionSpecs = (model: unknown): AttentionSpec[] => {
  const found = new Map<string, AttentionSpec>()
  const walk = (x: unknown): void => {
    if (Array.isArray(x)) x.forEach(walk)
    else if (typeof x === "object" && x !== null) {
      if ((x as { op?: unknown }).op === "attention") found.set(JSON.stringify(x), x as AttentionSpec)
      else Object.values(x).forEach(walk)
    }
  }
  walk(model)
  return [...found.values()]
}
