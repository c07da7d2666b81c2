import { type DecoderSpec, paramTable } from "../../dsl/index.js"

/** A checkpoint's parameters by name, as float32, in the project's layouts (matrices [in, out]). */
export type Weights = Readonly<Record<string, Float32Array>>

export interface Tensor {
  readonly shape: readonly number[]
  readonly data: Float32Array
}

/**
 * Looks parameters up by checkpoint name with the shape the spec declares; a name the spec
 * does not have, or data of the wrong size, is a bug in an exporter, not bad input.
 */
export const weightsOf = (spec: DecoderSpec, weights: Weights): ((name: string) => Tensor) => {
  const shapes = new Map(paramTable(spec).map((p) => [p.name, p.decl.shape]))
  return (name) => {
    const shape = shapes.get(name)
    const data = weights[name]
    if (shape === undefined) throw new Error(`export: the spec has no parameter "${name}"`)
    if (data === undefined || data.length !== shape.reduce((a, b) => a * b, 1)) throw new Error(`export: parameter "${name}" is missing or has the wrong size`)
    return { shape, data }
  }
}

/** [rows, cols] row-major → [cols, rows] row-major: the project's [in, out] to nn.Linear's [out, in]. */
export const transpose = (t: Tensor): Tensor => {
  const [rows, cols] = t.shape as [number, number]
  const out = new Float32Array(rows * cols)
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = t.data[r * cols + c]!
  return { shape: [cols, rows], data: out }
}

/** Matrices side by side along the columns (GPT-2's fused c_attn = [wq | wk | wv]); vectors concatenated. */
export const concatColumns = (parts: ReadonlyArray<Tensor>): Tensor => {
  if (parts[0]!.shape.length === 1) {
    const data = new Float32Array(parts.reduce((s, p) => s + p.data.length, 0))
    parts.reduce((at, p) => (data.set(p.data, at), at + p.data.length), 0)
    return { shape: [data.length], data }
  }
  const rows = parts[0]!.shape[0]!
  const cols = parts.reduce((s, p) => s + p.shape[1]!, 0)
  const data = new Float32Array(rows * cols)
  for (let r = 0; r < rows; r++) {
    let at = r * cols
    for (const p of parts) {
      const c = p.shape[1]!
      data.set(p.data.subarray(r * c, (r + 1) * c), at)
      at += c
    }
  }
  return { shape: [rows, cols], data }
}

export const zeros = (n: number): Tensor => ({ shape: [n], data: new Float32Array(n) })
