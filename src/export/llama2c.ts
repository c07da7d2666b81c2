import { type DecoderSpec, formatPath } from "../../dsl/index.js"
import { ffnHidden } from "../../dsl/ffn.js"
import { innerWidth } from "../../dsl/kinds/attention/fields.js"
import { SentencePieceTokenizer } from "../tokenizer/sentencepiece.js"
import type { TextTokenizer } from "../tokenizer/text-tokenizer.js"
import { Tokenizer } from "../tokenizer/tokenizer.js"
import type { Exported } from "./exported.js"
import { type PreNormBlock, preNormBlocks, unsupportedOptions } from "./structure.js"
import { type Tensor, transpose, type Weights, weightsOf } from "./weights.js"

/**
 * Export to llama2.c (Karpathy): the legacy (version 0) `model.bin` that its `run.c` reads,
 * and a `tokenizer.bin` with this project's token pieces. run.c hard-codes what a Llama 2
 * model is: pre-norm blocks of RMSNorm (epsilon 1e-5), rotary attention (base 10000, the
 * whole head rotated, interleaved pairs) without biases, a SwiGLU FFN without biases and a
 * final RMSNorm; anything else is refused, with every reason, before a byte is written.
 */
export const RUNC_EPS = 1e-5
export const RUNC_ROPE_BASE = 10000
/** run.c feeds id 1 first (its BOS) and stops when it samples id 1. */
export const RUNC_BOS = 1
/** run.c encodes a byte missing from its vocabulary as id 3 + byte. */
export const RUNC_FIRST_BYTE = 3

const problemsOf = (spec: DecoderSpec, blocks: ReadonlyArray<PreNormBlock>): string[] => {
  const out: string[] = []
  const pe = spec.posenc
  const first = blocks[0]!
  if (pe.kind !== "rope") out.push(`at ${formatPath(["posenc"])}: position scheme "${pe.kind}"; run.c computes rotary positions only`)
  else {
    if (pe.base !== RUNC_ROPE_BASE) out.push(`at ${formatPath(["posenc", "base"])}: rotary base ${pe.base}; run.c hard-codes ${RUNC_ROPE_BASE}`)
    const headDim = spec.width / first.attention.node.heads
    if (pe.dims !== undefined && pe.dims !== headDim) out.push(`at ${formatPath(["posenc", "dims"])}: rotates ${pe.dims} of ${headDim} head dims; run.c rotates the whole head`)
  }
  const rms = (n: { node: { kind: string; eps?: number }; at: string }) => {
    if (n.node.kind !== "rms") out.push(`at ${n.at}: norm "${n.node.kind}"; run.c computes RMSNorm only`)
    else if (n.node.eps !== RUNC_EPS) out.push(`at ${n.at}: RMSNorm epsilon ${n.node.eps}; run.c hard-codes ${RUNC_EPS}`)
  }
  blocks.forEach((b, i) => {
    rms(b.attentionNorm)
    rms(b.ffnNorm)
    if (b.attention.node.kind !== "full") out.push(`at ${b.attention.at}: attention "${b.attention.node.kind}"; run.c computes full causal attention only`)
    if (b.attention.node.bias) out.push(`at ${b.attention.at}: attention with biases; run.c's projections have none`)
    if (b.ffn.node.activation.kind !== "swiglu") out.push(`at ${b.ffn.at}: activation "${b.ffn.node.activation.kind}"; run.c computes SwiGLU only`)
    if (b.ffn.node.bias) out.push(`at ${b.ffn.at}: FFN with biases; run.c's projections have none`)
    if (innerWidth(b.attention.node, spec.width) !== spec.width) out.push(`at ${b.attention.at}: heads × head size ${innerWidth(b.attention.node, spec.width)} ≠ width ${spec.width}; run.c's head size is dim / heads`)
    // run.c has one head count and one FFN width for all layers.
    if (b.attention.node.heads !== first.attention.node.heads || ffnHidden(b.ffn.node, spec.width) !== ffnHidden(first.ffn.node, spec.width)) {
      out.push(`at ${b.attention.at}: block ${i} differs from block 0 in heads or FFN width; run.c has one of each for all layers`)
    }
  })
  rms({ node: spec.norm, at: formatPath(["norm"]) })
  out.push(...unsupportedOptions(spec, blocks, "run.c"))
  // Blocks repeated by depth share their paths and so their messages.
  return [...new Set(out)]
}

/**
 * run.c's id for each of this tokenizer's ids. `<|endoftext|>`, which ends every story in
 * training, becomes 1, run.c's BOS (fed first, and the token that stops generation); byte b
 * becomes 3 + b, run.c's byte fallback; every other id keeps its order in the free slots
 * (0, 2, 259, 260, ...). With this project's layout (bytes 0–255, `<|endoftext|>` 256, merges
 * from 257) the merges from 259 on keep their ids and 257, 258 go to 0 and 2.
 */
export const llama2cIds = (tokenizer: Tokenizer): Int32Array => {
  const n = tokenizer.vocabSize
  const ids = new Int32Array(n).fill(-1)
  const specials = new Set(tokenizer.specials.map((s) => s.id))
  ids[tokenizer.eotId] = RUNC_BOS
  const byteSeen = new Set<number>()
  tokenizer.tokens.forEach((bytes, id) => {
    if (bytes.length === 1 && !specials.has(id) && !byteSeen.has(bytes[0]!)) {
      byteSeen.add(bytes[0]!)
      ids[id] = RUNC_FIRST_BYTE + bytes[0]!
    }
  })
  const taken = new Set(ids)
  let slot = 0
  for (let id = 0; id < n; id++) {
    if (ids[id] !== -1) continue
    while (taken.has(slot)) slot++
    ids[id] = slot++
  }
  return ids
}

const BYTE_PIECE = /^<0x[0-9A-Fa-f]/

/** The problems of a tokenizer whose pieces run.c would misread. */
const tokenizerProblems = (tokenizer: Tokenizer): string[] => {
  const out: string[] = []
  if (tokenizer.vocabSize < RUNC_FIRST_BYTE + 256) out.push(`tokenizer: ${tokenizer.vocabSize} ids; run.c's layout needs at least ${RUNC_FIRST_BYTE + 256}`)
  const latin1 = (b: Uint8Array) => String.fromCharCode(...b)
  tokenizer.tokens.forEach((bytes, id) => {
    if (bytes.length > 1 && bytes.includes(0)) out.push(`tokenizer: token ${id} contains a NUL byte, which run.c's C strings cannot hold`)
    if (BYTE_PIECE.test(latin1(bytes))) out.push(`tokenizer: token ${id} (${JSON.stringify(latin1(bytes))}) begins like run.c's byte pieces <0xXX> and would decode as one byte`)
  })
  return out
}

/**
 * tokenizer.bin: the longest piece's length, then for each run.c id its score, length and
 * bytes. A piece is the token's own bytes, so run.c prints our text; the NUL byte, which a C
 * string cannot hold, is `<0x00>`, which run.c decodes to that byte. Scores rank merges as
 * BPE does (the earlier merge scores higher) for run.c's own prompt encoder; special tokens
 * score -1e10, which run.c's merge loop never picks.
 */
const tokenizerBin = (tokenizer: Tokenizer, ids: Int32Array): Uint8Array => {
  const n = tokenizer.vocabSize
  const pieces: Uint8Array[] = new Array(n)
  const scores = new Float32Array(n)
  const rank = new Map<number, number>()
  tokenizer.merges.forEach((m, r) => {
    if (!rank.has(m.id)) rank.set(m.id, r)
  })
  const specials = new Set(tokenizer.specials.map((s) => s.id))
  tokenizer.tokens.forEach((bytes, id) => {
    const to = ids[id]!
    pieces[to] = bytes.length === 1 && bytes[0] === 0 ? new TextEncoder().encode("<0x00>") : bytes
    scores[to] = specials.has(id) ? -1e10 : -(rank.get(id) ?? 0)
  })
  const size = 4 + pieces.reduce((s, p) => s + 8 + p.length, 0)
  const out = new Uint8Array(size)
  const view = new DataView(out.buffer)
  view.setInt32(0, Math.max(...pieces.map((p) => p.length)), true)
  let at = 4
  for (let i = 0; i < n; i++) {
    view.setFloat32(at, scores[i]!, true)
    view.setInt32(at + 4, pieces[i]!.length, true)
    out.set(pieces[i]!, at + 8)
    at += 8 + pieces[i]!.length
  }
  return out
}

/**
 * Rows of an [out, in] projection reordered within each head from rotate_half pairs
 * (j, j + d/2), this project's convention, to run.c's interleaved pairs (2j, 2j + 1): row
 * 2j takes row j, row 2j + 1 takes row j + d/2. q and k get the same order, so q·k is
 * unchanged, and each rotated pair meets the same angle.
 */
export const interleaveHeads = (w: Tensor, heads: number): Tensor => {
  const [rows, cols] = w.shape as [number, number]
  const d = rows / heads
  const out = new Float32Array(rows * cols)
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < d / 2; j++) {
      out.set(w.data.subarray((h * d + j) * cols, (h * d + j + 1) * cols), (h * d + 2 * j) * cols)
      out.set(w.data.subarray((h * d + j + d / 2) * cols, (h * d + j + d / 2 + 1) * cols), (h * d + 2 * j + 1) * cols)
    }
  }
  return { shape: w.shape, data: out }
}

/** Rows of a [vocab, dim] table moved to run.c's ids. */
const permuteRows = (t: Tensor, ids: Int32Array): Float32Array => {
  const cols = t.shape[1]!
  const out = new Float32Array(t.data.length)
  ids.forEach((to, from) => out.set(t.data.subarray(from * cols, (from + 1) * cols), to * cols))
  return out
}

/**
 * run.c's ids and tokenizer.bin for a run's tokenizer: the byte-level BPE's ids moved to run.c's
 * layout; a SentencePiece tokenizer (an imported model's) is run.c's own, written back as read.
 */
const runcTokenizer = (tokenizer: TextTokenizer): { readonly problems: string[]; readonly ids?: Int32Array; readonly bin?: () => Uint8Array } => {
  if (tokenizer instanceof SentencePieceTokenizer) return { problems: [], ids: Int32Array.from({ length: tokenizer.vocabSize }, (_, i) => i), bin: () => tokenizer.toBin() }
  if (!(tokenizer instanceof Tokenizer)) return { problems: [`tokenizer: kind "${tokenizer.kind}" has no llama2.c tokenizer.bin`] }
  const problems = tokenizerProblems(tokenizer)
  if (problems.length > 0) return { problems }
  const ids = llama2cIds(tokenizer)
  return { problems, ids, bin: () => tokenizerBin(tokenizer, ids) }
}

export const toLlama2c = (spec: DecoderSpec, weights: Weights, tokenizer: TextTokenizer): Exported => {
  const structure = preNormBlocks(spec)
  if (!structure.ok) return { ok: false, problems: [structure.problem] }
  const blocks = structure.blocks
  const runc = runcTokenizer(tokenizer)
  const problems = [...problemsOf(spec, blocks), ...runc.problems]
  if (tokenizer.vocabSize !== spec.vocab) problems.push(`tokenizer: ${tokenizer.vocabSize} ids, the model has ${spec.vocab}`)
  if (problems.length > 0 || runc.ids === undefined || runc.bin === undefined) return { ok: false, problems }

  const w = weightsOf(spec, weights)
  const ids = runc.ids
  const heads = blocks[0]!.attention.node.heads
  const dim = spec.width
  const headSize = dim / heads
  const hidden = w(`${blocks[0]!.ffn.name}.w_in`).shape[1]!
  const layers = blocks.length
  const perLayer = (f: (b: PreNormBlock) => Tensor): Float32Array[] => blocks.map((b) => f(b).data)
  const linear = (name: string) => transpose(w(name))
  const rotary = new Float32Array(spec.context * headSize)
  for (let pos = 0; pos < spec.context; pos++) {
    for (let j = 0; j < headSize / 2; j++) {
      const angle = pos * RUNC_ROPE_BASE ** ((-2 * j) / headSize)
      rotary[pos * (headSize / 2) + j] = Math.cos(angle)
      rotary[(spec.context + pos) * (headSize / 2) + j] = Math.sin(angle)
    }
  }
  // In run.c's memory_map_weights order; every matrix [out, in] row-major.
  const sections: Float32Array[] = [
    permuteRows(w("embed.tokens"), ids),
    ...perLayer((b) => w(`${b.attentionNorm.name}.gain`)),
    ...perLayer((b) => interleaveHeads(linear(`${b.attention.name}.wq`), heads)),
    ...perLayer((b) => interleaveHeads(linear(`${b.attention.name}.wk`), heads)),
    ...perLayer((b) => linear(`${b.attention.name}.wv`)),
    ...perLayer((b) => linear(`${b.attention.name}.wo`)),
    ...perLayer((b) => w(`${b.ffnNorm.name}.gain`)),
    ...perLayer((b) => linear(`${b.ffn.name}.w_gate`)),
    ...perLayer((b) => linear(`${b.ffn.name}.w_out`)),
    ...perLayer((b) => linear(`${b.ffn.name}.w_in`)),
    w("norm.gain").data,
    // The legacy format's RoPE tables (cos, then sin, [context, head size / 2]); run.c skips them.
    rotary,
    ...(spec.tied ? [] : [permuteRows(transpose(w("head.weight")), ids)]),
  ]
  const header = new Int32Array([dim, hidden, layers, heads, heads, spec.tied ? spec.vocab : -spec.vocab, spec.context])
  const model = [new Uint8Array(header.buffer), ...sections.map((s) => new Uint8Array(s.buffer, s.byteOffset, s.byteLength))]
  const bytes = new Uint8Array(model.reduce((s, m) => s + m.length, 0))
  model.reduce((at, m) => (bytes.set(m, at), at + m.length), 0)
  return {
    ok: true,
    files: [
      { name: "model.bin", data: bytes },
      { name: "tokenizer.bin", data: runc.bin() },
    ],
    summary: { dim, hiddenDim: hidden, layers, heads, vocab: spec.vocab, seqLen: spec.context, sharedClassifier: spec.tied, bos: `${tokenizer.kind === "bpe" ? "<|endoftext|>" : "BOS"} (id ${tokenizer.eotId} here, ${RUNC_BOS} in run.c)` },
  }
}
