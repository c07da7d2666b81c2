/**
 * A naive float64 implementation of the base decoder (pre-LayerNorm GPT-2 blocks, learned
 * positions, dense causal attention, ReLU/GELU FFN), written with plain loops and
 * independent of tfjs and of the interpreter, to check it against. Each block has its own
 * head count, head size, FFN width and activation.
 */
import { erf } from "./erf.js"

export type Weights = Map<string, Float64Array>

export interface RefBlock {
  readonly heads: number
  readonly headDim: number
  readonly hidden: number
  readonly activation: "relu" | "gelu"
  /** Each head's q and k RMS-normalised (eps 1e-6, no gain) before the scores. */
  readonly qkNorm?: boolean
}

export interface RefConfig {
  readonly vocab: number
  readonly width: number
  readonly blocks: ReadonlyArray<RefBlock>
  readonly tied: boolean
  /** Logits c·tanh(logits / c). */
  readonly softcap?: number
}

const act = (kind: "relu" | "gelu", x: number): number => (kind === "relu" ? Math.max(0, x) : 0.5 * x * (1 + erf(x / Math.SQRT2)))

/** y[t][j] = Σ_i x[t][i]·W[i][j] (+ b[j]). */
const linear = (x: number[][], w: Float64Array, cols: number, b?: Float64Array): number[][] =>
  x.map((row) =>
    Array.from({ length: cols }, (_, j) => row.reduce((s, xi, i) => s + xi * w[i * cols + j]!, b ? b[j]! : 0)),
  )

const layerNorm = (x: number[][], g: Float64Array, b: Float64Array): number[][] =>
  x.map((row) => {
    const mean = row.reduce((s, v) => s + v, 0) / row.length
    const variance = row.reduce((s, v) => s + (v - mean) ** 2, 0) / row.length
    return row.map((v, i) => ((v - mean) / Math.sqrt(variance + 1e-5)) * g[i]! + b[i]!)
  })

/** Each head's dh-wide slice of every row divided by its root mean square (+ 1e-6). */
const rmsHeads = (x: number[][], dh: number): number[][] =>
  x.map((row) =>
    row.map((_, i) => {
      const head = row.slice(i - (i % dh), i - (i % dh) + dh)
      return row[i]! / Math.sqrt(head.reduce((s, v) => s + v * v, 0) / dh + 1e-6)
    }),
  )

const add = (a: number[][], b: number[][]): number[][] => a.map((r, i) => r.map((v, j) => v + b[i]![j]!))

/** What flows into a weight's matrix product: the rows [T][in] that multiply it. */
export type Record = (weight: string, input: number[][]) => void

/** Logits [T][V] of one sequence; `record` sees the input of every matrix product in a block. */
export const referenceLogits = (c: RefConfig, w: Weights, tokens: ReadonlyArray<number>, record?: Record): number[][] => {
  const W = (name: string): Float64Array => {
    const v = w.get(name)
    if (!v) throw new Error(`reference: missing ${name}`)
    return v
  }
  const d = c.width
  const emb = W("embed.tokens")
  const pos = W("posenc.table")
  let x = tokens.map((tok, t) => Array.from({ length: d }, (_, i) => emb[tok * d + i]! + pos[t * d + i]!))
  c.blocks.forEach((b, l) => {
    const p = `blocks.${l}`
    const dh = b.headDim
    const inner = b.heads * dh
    const h = layerNorm(x, W(`${p}.0.norm.gain`), W(`${p}.0.norm.bias`))
    for (const m of ["wq", "wk", "wv"]) record?.(`${p}.0.attention.${m}`, h)
    const q0 = linear(h, W(`${p}.0.attention.wq`), inner, W(`${p}.0.attention.bq`))
    const k0 = linear(h, W(`${p}.0.attention.wk`), inner, W(`${p}.0.attention.bk`))
    const [q, k] = b.qkNorm ? [rmsHeads(q0, dh), rmsHeads(k0, dh)] : [q0, k0]
    const v = linear(h, W(`${p}.0.attention.wv`), inner, W(`${p}.0.attention.bv`))
    const attn = x.map(() => new Array<number>(inner).fill(0))
    for (let hd = 0; hd < b.heads; hd++) {
      for (let t = 0; t < x.length; t++) {
        const scores: number[] = []
        for (let s = 0; s <= t; s++) {
          let dot = 0
          for (let i = 0; i < dh; i++) dot += q[t]![hd * dh + i]! * k[s]![hd * dh + i]!
          scores.push(dot / Math.sqrt(dh))
        }
        const m = Math.max(...scores)
        const e = scores.map((s) => Math.exp(s - m))
        const z = e.reduce((a, b) => a + b, 0)
        for (let s = 0; s <= t; s++) for (let i = 0; i < dh; i++) attn[t]![hd * dh + i]! += (e[s]! / z) * v[s]![hd * dh + i]!
      }
    }
    record?.(`${p}.0.attention.wo`, attn)
    x = add(x, linear(attn, W(`${p}.0.attention.wo`), d, W(`${p}.0.attention.bo`)))
    const h2 = layerNorm(x, W(`${p}.1.norm.gain`), W(`${p}.1.norm.bias`))
    record?.(`${p}.1.ffn.w_in`, h2)
    const hidden = linear(h2, W(`${p}.1.ffn.w_in`), b.hidden, W(`${p}.1.ffn.b_in`)).map((r) => r.map((u) => act(b.activation, u)))
    record?.(`${p}.1.ffn.w_out`, hidden)
    x = add(x, linear(hidden, W(`${p}.1.ffn.w_out`), d, W(`${p}.1.ffn.b_out`)))
  })
  const f = layerNorm(x, W("norm.gain"), W("norm.bias"))
  const logits = c.tied ? f.map((row) => Array.from({ length: c.vocab }, (_, v) => row.reduce((s, xi, i) => s + xi * emb[v * d + i]!, 0))) : linear(f, W("head.weight"), c.vocab)
  const cap = c.softcap
  return cap === undefined ? logits : logits.map((row) => row.map((z) => cap * Math.tanh(z / cap)))
}

/** Mean next-token cross-entropy of one sequence (tokens has T+1 entries). */
export const referenceLoss = (c: RefConfig, w: Weights, tokens: ReadonlyArray<number>): number => {
  const logits = referenceLogits(c, w, tokens.slice(0, -1))
  return (
    logits.reduce((s, row, t) => {
      const m = Math.max(...row)
      const lse = m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0))
      return s + lse - row[tokens[t + 1]!]!
    }, 0) / logits.length
  )
}
