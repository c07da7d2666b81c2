import { type DecoderSpec, formatPath } from "../../dsl/index.js"
import { ffnHidden } from "../../dsl/ffn.js"
import { headDimOf, innerWidth } from "../../dsl/kinds/attention/fields.js"
import { bytesToTokenString } from "../tokenizer/bytes.js"
import type { TextTokenizer } from "../tokenizer/text-tokenizer.js"
import { Tokenizer } from "../tokenizer/tokenizer.js"
import type { Exported, ExportNote, ExportOptions } from "./exported.js"
import { type GgmlType, ggmlTypes, Q8_0_BLOCK } from "./ggml.js"
import { encodeGguf, type GgufTensor, type GgufValue } from "./gguf-file.js"
import { interleaveHeads } from "./llama2c.js"
import { type PreNormBlock, preNormBlocks, unsupportedOptions } from "./structure.js"
import { type Tensor, transpose, type Weights, weightsOf } from "./weights.js"

/**
 * Export to GGUF with llama.cpp's `llama` architecture (llama-arch.cpp's tensor names,
 * llama-model.cpp's hyperparameter keys): pre-norm blocks of RMSNorm (one epsilon), full
 * causal attention with rotary positions (any base, the whole head) and a
 * SwiGLU FFN, no biases, a final RMSNorm, a tied or separate head. llama.cpp rotates the
 * interleaved pairs (2j, 2j + 1) for this architecture, as convert_hf_to_gguf.py's
 * LlamaModel.permute arranges Hugging Face's rotate_half weights, so the query and key rows
 * of each head are reordered as for run.c. The tokenizer is written as llama.cpp's `gpt2`
 * BPE (byte-level tokens and merges) with the pre-tokenizer `trillion`: llama-vocab.cpp
 * splits it with GPT-2's regex, this project's split, and, unlike `gpt-2`, does not delete
 * the space before punctuation when it turns tokens back into text. `<|endoftext|>` is BOS
 * (added before a prompt, as training saw each story begin) and EOS. Matrices are written in `type` (f32, f16, q8_0); vectors stay f32, and a
 * q8_0 matrix whose rows are not a multiple of 32 long is written f16, as llama.cpp's
 * converter falls back.
 */
export const ggufTypes = Object.keys(ggmlTypes) as GgmlType[]

const ARCH = "llama"

const TOKEN_NORMAL = 1
const TOKEN_CONTROL = 3

const problemsOf = (spec: DecoderSpec, blocks: ReadonlyArray<PreNormBlock>): string[] => {
  const out: string[] = []
  const first = blocks[0]!
  if (spec.posenc.kind !== "rope") out.push(`at ${formatPath(["posenc"])}: position scheme "${spec.posenc.kind}"; llama.cpp's llama architecture computes rotary positions`)
  else if (spec.posenc.dims !== undefined && spec.posenc.dims !== headDimOf(first.attention.node, spec.width)) {
    // llama.cpp refuses the file on load ("invalid n_rot") when rope.dimension_count is not the head size.
    out.push(`at ${formatPath(["posenc", "dims"])}: rotates ${spec.posenc.dims} of ${headDimOf(first.attention.node, spec.width)} head dims; llama.cpp's llama architecture rotates the whole head`)
  }
  const norms = [...blocks.flatMap((b) => [b.attentionNorm, b.ffnNorm]), { node: spec.norm, at: formatPath(["norm"]) }]
  for (const n of norms) if (n.node.kind !== "rms") out.push(`at ${n.at}: norm "${n.node.kind}"; llama.cpp's llama architecture computes RMSNorm only`)
  if (new Set(norms.map((n) => n.node.eps)).size > 1) out.push(`at ${formatPath(["norm"])}: the norms have different epsilons; llama.cpp's llama architecture has one`)
  blocks.forEach((b, i) => {
    if (b.attention.node.kind !== "full") out.push(`at ${b.attention.at}: attention "${b.attention.node.kind}"; llama.cpp's llama architecture computes full causal attention only`)
    if (b.attention.node.bias) out.push(`at ${b.attention.at}: attention with biases; this export writes llama's projections without them`)
    if (b.ffn.node.activation.kind !== "swiglu") out.push(`at ${b.ffn.at}: activation "${b.ffn.node.activation.kind}"; llama.cpp's llama architecture computes SwiGLU only`)
    if (b.ffn.node.bias) out.push(`at ${b.ffn.at}: FFN with biases; this export writes llama's projections without them`)
    if (innerWidth(b.attention.node, spec.width) !== spec.width) {
      out.push(`at ${b.attention.at}: heads × head size ${innerWidth(b.attention.node, spec.width)} ≠ width ${spec.width}; this export writes llama's head size as width / heads`)
    }
    if (b.attention.node.heads !== first.attention.node.heads || ffnHidden(b.ffn.node, spec.width) !== ffnHidden(first.ffn.node, spec.width)) {
      out.push(`at ${b.attention.at}: block ${i} differs from block 0 in heads or FFN width; this export writes one of each for all layers`)
    }
  })
  out.push(...unsupportedOptions(spec, blocks, "llama.cpp's llama architecture"))
  return [...new Set(out)]
}

/** llama.cpp's vocabulary holds each token text once; two tokens with the same text would share an id. */
const tokenizerProblems = (texts: ReadonlyArray<string>): string[] => {
  const seen = new Map<string, number>()
  const out: string[] = []
  texts.forEach((t, id) => {
    const earlier = seen.get(t)
    if (earlier !== undefined) out.push(`tokenizer: tokens ${earlier} and ${id} are both ${JSON.stringify(t)}; llama.cpp's vocabulary holds each text once`)
    seen.set(t, id)
  })
  return out
}

/** Token texts as llama.cpp's gpt2 vocabulary holds them: byte-level characters, specials as their content. */
const tokenTexts = (tokenizer: Tokenizer): string[] => {
  const specials = new Map(tokenizer.specials.map((s) => [s.id, s.content]))
  return tokenizer.tokens.map((bytes, id) => specials.get(id) ?? bytesToTokenString(bytes))
}

const tokenizerMetadata = (tokenizer: Tokenizer, texts: ReadonlyArray<string>): Array<[string, GgufValue]> => {
  const specials = new Set(tokenizer.specials.map((s) => s.id))
  return [
    ["tokenizer.ggml.model", { string: "gpt2" }],
    ["tokenizer.ggml.pre", { string: "trillion" }],
    ["tokenizer.ggml.tokens", { strings: texts }],
    ["tokenizer.ggml.token_type", { i32s: texts.map((_, id) => (specials.has(id) ? TOKEN_CONTROL : TOKEN_NORMAL)) }],
    ["tokenizer.ggml.merges", { strings: tokenizer.merges.map((m) => `${texts[m.left]} ${texts[m.right]}`) }],
    ["tokenizer.ggml.bos_token_id", { u32: tokenizer.eotId }],
    ["tokenizer.ggml.eos_token_id", { u32: tokenizer.eotId }],
    ["tokenizer.ggml.add_bos_token", { bool: true }],
    ["tokenizer.ggml.add_eos_token", { bool: false }],
  ]
}

export const toGguf = (spec: DecoderSpec, weights: Weights, tokenizer: TextTokenizer, note: ExportNote = {}, options: ExportOptions = {}): Exported => {
  // llama.cpp's gpt2 tokenizer model is the byte-level BPE; another kind's pieces would be read as it.
  if (!(tokenizer instanceof Tokenizer)) return { ok: false, problems: [`tokenizer: kind "${tokenizer.kind}"; the GGUF export writes the byte-level BPE as llama.cpp's gpt2 tokenizer only`] }
  const structure = preNormBlocks(spec)
  if (!structure.ok) return { ok: false, problems: [structure.problem] }
  const blocks = structure.blocks
  const texts = tokenTexts(tokenizer)
  const problems = [...problemsOf(spec, blocks), ...tokenizerProblems(texts)]
  if (tokenizer.vocabSize !== spec.vocab) problems.push(`tokenizer: ${tokenizer.vocabSize} ids, the model has ${spec.vocab}`)
  // The posenc test only narrows the type: problems already name a scheme other than rope.
  if (problems.length > 0 || spec.posenc.kind !== "rope") return { ok: false, problems }

  const type = options.type ?? "f32"
  const w = weightsOf(spec, weights)
  const b0 = blocks[0]!
  const heads = b0.attention.node.heads
  const headDim = headDimOf(b0.attention.node, spec.width)
  const hidden = ffnHidden(b0.ffn.node, spec.width)
  const tensors: GgufTensor[] = []
  // A [rows, cols] row-major tensor is ne = [cols, rows] in ggml's order.
  const add = (name: string, t: Tensor) => {
    const dims = [...t.shape].reverse()
    const matrixType: GgmlType = type === "q8_0" && dims[0]! % Q8_0_BLOCK !== 0 ? "f16" : type
    tensors.push({ name, dims, type: dims.length === 1 ? "f32" : matrixType, data: t.data })
  }
  const linear = (name: string) => transpose(w(name))
  add("token_embd.weight", w("embed.tokens"))
  blocks.forEach((b, i) => {
    const a = b.attention.name
    const f = b.ffn.name
    add(`blk.${i}.attn_norm.weight`, w(`${b.attentionNorm.name}.gain`))
    add(`blk.${i}.attn_q.weight`, interleaveHeads(linear(`${a}.wq`), heads))
    add(`blk.${i}.attn_k.weight`, interleaveHeads(linear(`${a}.wk`), heads))
    add(`blk.${i}.attn_v.weight`, linear(`${a}.wv`))
    add(`blk.${i}.attn_output.weight`, linear(`${a}.wo`))
    add(`blk.${i}.ffn_norm.weight`, w(`${b.ffnNorm.name}.gain`))
    add(`blk.${i}.ffn_gate.weight`, linear(`${f}.w_gate`))
    add(`blk.${i}.ffn_up.weight`, linear(`${f}.w_in`))
    add(`blk.${i}.ffn_down.weight`, linear(`${f}.w_out`))
  })
  add("output_norm.weight", w("norm.gain"))
  // Without output.weight llama.cpp reads the token embedding as the head.
  if (!spec.tied) add("output.weight", linear("head.weight"))

  const metadata: Array<[string, GgufValue]> = [
    ["general.architecture", { string: ARCH }],
    ["general.name", { string: options.name ?? "tinystories-lab" }],
    ["general.file_type", { u32: ggmlTypes[type].fileType }],
    ...(type === "q8_0" ? ([["general.quantization_version", { u32: 2 }]] as Array<[string, GgufValue]>) : []),
    ...(note.droppedPolicy === undefined ? [] : ([["tinystories_lab.dropped_depth_policy", { string: note.droppedPolicy }]] as Array<[string, GgufValue]>)),
    [`${ARCH}.vocab_size`, { u32: spec.vocab }],
    [`${ARCH}.context_length`, { u32: spec.context }],
    [`${ARCH}.embedding_length`, { u32: spec.width }],
    [`${ARCH}.block_count`, { u32: blocks.length }],
    [`${ARCH}.feed_forward_length`, { u32: hidden }],
    [`${ARCH}.attention.head_count`, { u32: heads }],
    [`${ARCH}.attention.head_count_kv`, { u32: heads }],
    [`${ARCH}.rope.dimension_count`, { u32: headDim }],
    [`${ARCH}.rope.freq_base`, { f32: spec.posenc.base }],
    [`${ARCH}.attention.layer_norm_rms_epsilon`, { f32: spec.norm.eps }],
    ...tokenizerMetadata(tokenizer, texts),
  ]
  const counts: Partial<Record<GgmlType, number>> = {}
  for (const t of tensors) counts[t.type] = (counts[t.type] ?? 0) + 1
  return {
    ok: true,
    files: [{ name: "model.gguf", data: encodeGguf(metadata, tensors) }],
    summary: { architecture: ARCH, type, tensors: counts, bos: `<|endoftext|> (id ${tokenizer.eotId})`, eos: `<|endoftext|> (id ${tokenizer.eotId})` },
  }
}
