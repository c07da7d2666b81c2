import { type DecoderSpec, llama } from "../../dsl/index.js"
import { preNormBlocks } from "../export/structure.js"
import { transpose, type Tensor, type Weights } from "../export/weights.js"

/**
 * Import from llama2.c (Karpathy): the `model.bin` that its export.py writes, in the legacy
 * format (version 0: a header of 7 int32, then float32 weights in run.c's order, the RoPE
 * tables included) or the versioned `ak42` ones (a 256-byte header; version 1 float32, version 2
 * int8 in groups with a float32 scale each, dequantised here). The model is the `llama` preset:
 * run.c's arithmetic (RMSNorm epsilon 1e-5, rotary base 10000 over the whole head, SwiGLU, no
 * biases). run.c rotates interleaved pairs; this lab rotates halves (rotate_half), so the rows
 * of wq and wk are put back in that order, the inverse of the export's permutation.
 */
export const LLAMA2C_MAGIC = 0x616b3432
const VERSIONED_HEADER = 256

export interface Llama2cHeader {
  readonly version: 0 | 1 | 2
  readonly dim: number
  readonly hiddenDim: number
  readonly layers: number
  readonly heads: number
  readonly kvHeads: number
  readonly vocab: number
  readonly seqLen: number
  readonly sharedClassifier: boolean
  /** Version 2's quantisation group. */
  readonly groupSize?: number
}

export type Imported =
  | { readonly ok: true; readonly header: Llama2cHeader; readonly spec: DecoderSpec; readonly weights: Weights; readonly dequantised: boolean }
  | { readonly ok: false; readonly problems: ReadonlyArray<string> }

const FIELDS = ["dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"] as const

/** The header, or why it cannot be read; the shape's own problems are `shapeProblems`'. */
export const readHeader = (bytes: Uint8Array): { readonly header: Llama2cHeader } | { readonly problem: string } => {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (bytes.length < 28) return { problem: `${bytes.length} bytes; a llama2.c model.bin starts with a header of at least 28` }
  const versioned = view.getUint32(0, true) === LLAMA2C_MAGIC
  const at = versioned ? 8 : 0
  if (versioned && bytes.length < VERSIONED_HEADER) return { problem: `${bytes.length} bytes; the "ak42" header alone is ${VERSIONED_HEADER}` }
  const version = versioned ? view.getInt32(4, true) : 0
  if (version !== 0 && version !== 1 && version !== 2) return { problem: `header field version: ${version}; expected 1 (float32) or 2 (int8 groups), or the legacy header without "ak42"` }
  const [dim, hiddenDim, layers, heads, kvHeads, vocab, seqLen] = FIELDS.map((_, i) => view.getInt32(at + 4 * i, true)) as [number, number, number, number, number, number, number]
  return {
    header: {
      version,
      dim,
      hiddenDim,
      layers,
      heads,
      kvHeads,
      // The legacy format marks a separate classifier with a negative vocab_size; the versioned ones with a flag byte.
      vocab: Math.abs(vocab),
      seqLen,
      sharedClassifier: versioned ? bytes[36] === 1 : vocab > 0,
      ...(version === 2 ? { groupSize: view.getInt32(37, true) } : {}),
    },
  }
}

/** What the lab cannot express, by header field. */
export const shapeProblems = (h: Llama2cHeader): string[] => {
  const out: string[] = []
  const positive: Array<[string, number]> = [["dim", h.dim], ["hidden_dim", h.hiddenDim], ["n_layers", h.layers], ["n_heads", h.heads], ["vocab_size", h.vocab], ["seq_len", h.seqLen]]
  for (const [name, v] of positive) if (!(v > 0)) out.push(`header field ${name}: ${v}; expected a positive integer`)
  if (out.length > 0) return out
  if (h.kvHeads !== h.heads) out.push(`header field n_kv_heads: ${h.kvHeads} ≠ n_heads ${h.heads}; the lab's attention has one key/value head per query head (no grouped-query attention)`)
  if (h.dim % h.heads !== 0) out.push(`header field n_heads: ${h.heads} does not divide dim ${h.dim}; run.c's head size is dim / n_heads`)
  else if ((h.dim / h.heads) % 2 !== 0) out.push(`header field n_heads: head size ${h.dim / h.heads} is odd; rotary positions rotate pairs`)
  if (h.groupSize !== undefined && !(h.groupSize > 0)) out.push(`header field group_size: ${h.groupSize}; expected a positive integer`)
  return out
}

/**
 * Rows of an [out, in] projection put back from run.c's interleaved pairs (2j, 2j + 1) to
 * rotate_half pairs (j, j + d/2) within each head: the inverse of the export's `interleaveHeads`.
 */
export const deinterleaveHeads = (w: Tensor, heads: number): Tensor => {
  const [rows, cols] = w.shape as [number, number]
  const d = rows / heads
  const out = new Float32Array(rows * cols)
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < d / 2; j++) {
      out.set(w.data.subarray((h * d + 2 * j) * cols, (h * d + 2 * j + 1) * cols), (h * d + j) * cols)
      out.set(w.data.subarray((h * d + 2 * j + 1) * cols, (h * d + 2 * j + 2) * cols), (h * d + j + d / 2) * cols)
    }
  }
  return { shape: w.shape, data: out }
}

/** The tensors of a model.bin, by run.c's names, each [layers, ...] or whole; every matrix [out, in]. */
type Section = "emb" | "rmsAtt" | "wq" | "wk" | "wv" | "wo" | "rmsFfn" | "w1" | "w2" | "w3" | "rmsFinal" | "freqs" | "wcls"

const sizesOf = (h: Llama2cHeader): Record<Section, number> => {
  const head = h.dim / h.heads
  return {
    emb: h.vocab * h.dim,
    rmsAtt: h.layers * h.dim,
    wq: h.layers * h.dim * h.dim,
    wk: h.layers * h.dim * h.kvHeads * head,
    wv: h.layers * h.dim * h.kvHeads * head,
    wo: h.layers * h.dim * h.dim,
    rmsFfn: h.layers * h.dim,
    w1: h.layers * h.hiddenDim * h.dim,
    w2: h.layers * h.dim * h.hiddenDim,
    w3: h.layers * h.hiddenDim * h.dim,
    rmsFinal: h.dim,
    freqs: h.seqLen * head,
    wcls: h.sharedClassifier ? 0 : h.vocab * h.dim,
  }
}

/** Each version's order of sections (export.py's legacy_export, version1_export, version2_export). */
const LEGACY: readonly Section[] = ["emb", "rmsAtt", "wq", "wk", "wv", "wo", "rmsFfn", "w1", "w2", "w3", "rmsFinal", "freqs", "wcls"]
const NORMS: readonly Section[] = ["rmsAtt", "rmsFfn", "rmsFinal"]
const MATRICES: readonly Section[] = ["emb", "wq", "wk", "wv", "wo", "w1", "w2", "w3", "wcls"]

/** Reads the sections in order; the file must end exactly after them. */
const readSections = (bytes: Uint8Array, h: Llama2cHeader): { readonly sections: Record<Section, Float32Array> } | { readonly problem: string } => {
  const sizes = sizesOf(h)
  const start = h.version === 0 ? 28 : VERSIONED_HEADER
  const float32 = (order: readonly Section[]) => order.reduce((s, k) => s + 4 * sizes[k], 0)
  const expected =
    h.version === 2
      ? start + float32(NORMS) + MATRICES.reduce((s, k) => s + sizes[k] + (4 * sizes[k]) / h.groupSize!, 0)
      : start + float32(h.version === 0 ? LEGACY : [...NORMS, ...MATRICES])
  if (bytes.length !== expected) return { problem: `${bytes.length} bytes; the header's shape (${describe(h)}) makes a version ${h.version} file of ${expected}` }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const sections = {} as Record<Section, Float32Array>
  let at = start
  const takeFloat32 = (k: Section) => {
    const out = new Float32Array(sizes[k])
    for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(at + 4 * i, true)
    at += 4 * sizes[k]
    sections[k] = out
  }
  if (h.version === 0) LEGACY.forEach(takeFloat32)
  else if (h.version === 1) [...NORMS, ...MATRICES].forEach(takeFloat32)
  else {
    NORMS.forEach(takeFloat32)
    // The int8 values of every matrix, then all their scales: one float32 per group of `groupSize`.
    const quantised = MATRICES.map((k) => {
      const q = new Int8Array(bytes.buffer, bytes.byteOffset + at, sizes[k])
      at += sizes[k]
      return q
    })
    MATRICES.forEach((k, m) => {
      const q = quantised[m]!
      const out = new Float32Array(q.length)
      const g = h.groupSize!
      for (let group = 0; group < q.length / g; group++) {
        const scale = view.getFloat32(at + 4 * group, true)
        for (let i = group * g; i < (group + 1) * g; i++) out[i] = q[i]! * scale
      }
      at += (4 * q.length) / g
      sections[k] = out
    })
  }
  return { sections }
}

const describe = (h: Llama2cHeader): string =>
  `dim ${h.dim}, hidden_dim ${h.hiddenDim}, n_layers ${h.layers}, n_heads ${h.heads}, vocab_size ${h.vocab}, seq_len ${h.seqLen}, ${h.sharedClassifier ? "shared" : "separate"} classifier${h.groupSize !== undefined ? `, group_size ${h.groupSize}` : ""}`

/** The model of a llama2.c model.bin in the lab's spec and parameter layout, or every reason it cannot be. */
export const fromLlama2c = (bytes: Uint8Array): Imported => {
  const read = readHeader(bytes)
  if ("problem" in read) return { ok: false, problems: [read.problem] }
  const h = read.header
  const problems = shapeProblems(h)
  if (h.groupSize !== undefined && problems.length === 0) {
    const sizes = sizesOf(h)
    for (const k of MATRICES) if (sizes[k] % h.groupSize !== 0) problems.push(`header field group_size: ${h.groupSize} does not divide the ${sizes[k]} values of ${k}`)
  }
  if (problems.length > 0) return { ok: false, problems }
  const sectioned = readSections(bytes, h)
  if ("problem" in sectioned) return { ok: false, problems: [sectioned.problem] }
  const s = sectioned.sections

  const spec = llama({ vocab: h.vocab, width: h.dim, context: h.seqLen, layers: h.layers, heads: h.heads, hidden: h.hiddenDim, tied: h.sharedClassifier })
  const structure = preNormBlocks(spec)
  if (!structure.ok) throw new Error(`the llama preset is not pre-norm blocks: ${structure.problem}`)
  /** Layer l's [rows, cols] slice of a per-layer section. */
  const layer = (k: Section, l: number, rows: number, cols: number): Tensor => ({ shape: [rows, cols], data: s[k].slice(l * rows * cols, (l + 1) * rows * cols) })
  const vector = (k: Section, l: number, n: number): Float32Array => s[k].slice(l * n, (l + 1) * n)
  const weights: Record<string, Float32Array> = { "embed.tokens": s.emb, "norm.gain": s.rmsFinal }
  if (!h.sharedClassifier) weights["head.weight"] = transpose({ shape: [h.vocab, h.dim], data: s.wcls }).data
  structure.blocks.forEach((b, l) => {
    const { dim, hiddenDim: hidden, heads } = h
    weights[`${b.attentionNorm.name}.gain`] = vector("rmsAtt", l, dim)
    weights[`${b.ffnNorm.name}.gain`] = vector("rmsFfn", l, dim)
    weights[`${b.attention.name}.wq`] = transpose(deinterleaveHeads(layer("wq", l, dim, dim), heads)).data
    weights[`${b.attention.name}.wk`] = transpose(deinterleaveHeads(layer("wk", l, dim, dim), heads)).data
    weights[`${b.attention.name}.wv`] = transpose(layer("wv", l, dim, dim)).data
    weights[`${b.attention.name}.wo`] = transpose(layer("wo", l, dim, dim)).data
    weights[`${b.ffn.name}.w_gate`] = transpose(layer("w1", l, hidden, dim)).data
    weights[`${b.ffn.name}.w_out`] = transpose(layer("w2", l, dim, hidden)).data
    weights[`${b.ffn.name}.w_in`] = transpose(layer("w3", l, hidden, dim)).data
  })
  return { ok: true, header: h, spec, weights, dequantised: h.version === 2 }
}
