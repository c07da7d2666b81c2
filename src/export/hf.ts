import { Effect } from "effect"
import { type DecoderSpec, formatPath } from "../../dsl/index.js"
import { innerWidth } from "../../dsl/kinds/attention/fields.js"
import { toLlamaTokenizerJSON } from "../tokenizer/llama-json.js"
import { SentencePieceTokenizer } from "../tokenizer/sentencepiece.js"
import type { TextTokenizer } from "../tokenizer/text-tokenizer.js"
import { encodeSafetensors } from "../train/safetensors.js"
import { type Exported, type ExportFile, type ExportNote, jsonFile } from "./exported.js"
import { type NormNode, type PreNormBlock, preNormBlocks, unsupportedOptions } from "./structure.js"
import { concatColumns, type Tensor, transpose, type Weights, weightsOf, zeros } from "./weights.js"

/**
 * Export to a Hugging Face transformers directory: `GPT2LMHeadModel` for learned absolute
 * positions with LayerNorm and an ungated FFN, `LlamaForCausalLM` for rotary positions with
 * RMSNorm and a gated FFN. Parameter names, layouts and config.json fields follow
 * transformers' configuration_gpt2.py / modeling_gpt2.py and configuration_llama.py /
 * modeling_llama.py (see the README): GPT-2's Conv1D weights are [in, out], as this project
 * stores them; Llama's nn.Linear weights are [out, in]. Llama's rotary convention
 * (rotate_half) is this project's, so nothing is permuted.
 */

/** transformers' ACT2FN names for the ungated activations GPT2MLP can apply. */
const gpt2Activation = (a: { kind: string; beta?: number }): string | undefined =>
  a.kind === "relu" ? "relu" : a.kind === "gelu" ? "gelu" : a.kind === "gelu-tanh" ? "gelu_new" : a.kind === "silu" || (a.kind === "swish" && a.beta === 1) ? "silu" : a.kind === "relu2" ? "relu2" : undefined

/** LlamaMLP computes down(act(gate(x)) · up(x)): the gate activation of each GLU kind. */
const llamaActivation = (a: { kind: string }): string | undefined => (a.kind === "swiglu" ? "silu" : a.kind === "geglu" ? "gelu" : a.kind === "reglu" ? "relu" : undefined)

type Family = "gpt2" | "llama"

/** Parts every block must share: transformers' configs hold one of each for all layers. */
const sameEverywhere = (blocks: ReadonlyArray<PreNormBlock>, out: string[]): void => {
  const key = (b: PreNormBlock) =>
    JSON.stringify([b.attentionNorm.node, b.ffnNorm.node, { ...b.attention.node, dropout: 0 }, { ...b.ffn.node, dropout: 0 }])
  blocks.forEach((b, i) => {
    if (key(b) !== key(blocks[0]!)) out.push(`at ${b.attention.at}: block ${i} differs from block 0; transformers' configs describe every layer alike`)
  })
}

const problemsOf = (spec: DecoderSpec, family: Family, blocks: ReadonlyArray<PreNormBlock>): string[] => {
  const out: string[] = []
  const b = blocks[0]!
  const cls = family === "gpt2" ? "GPT2LMHeadModel" : "LlamaForCausalLM"
  const normKind = family === "gpt2" ? "layer" : "rms"
  const norms = [b.attentionNorm, b.ffnNorm, { node: spec.norm, at: formatPath(["norm"]) }]
  for (const n of norms) if (n.node.kind !== normKind) out.push(`at ${n.at}: norm "${n.node.kind}"; ${cls} uses ${normKind === "layer" ? "LayerNorm" : "RMSNorm"}`)
  if (new Set(norms.map((n) => n.node.eps)).size > 1) out.push(`at ${formatPath(["norm"])}: the norms have different epsilons; ${cls} has one`)
  if (b.attention.node.kind !== "full") out.push(`at ${b.attention.at}: attention "${b.attention.node.kind}"; ${cls} computes full causal attention only`)
  const act = b.ffn.node.activation
  if (family === "gpt2" && gpt2Activation(act) === undefined) {
    out.push(`at ${b.ffn.at}: activation "${act.kind}"${"beta" in act ? ` (β=${act.beta})` : ""}; GPT2MLP applies one ungated activation (relu, gelu, gelu-tanh, silu, relu2)`)
  }
  if (family === "llama" && llamaActivation(act) === undefined) out.push(`at ${b.ffn.at}: activation "${act.kind}"; LlamaMLP is gated (swiglu, geglu, reglu)`)
  if (family === "llama" && spec.posenc.kind === "rope" && spec.posenc.dims !== undefined && spec.posenc.dims !== spec.width / b.attention.node.heads) {
    out.push(`at ${formatPath(["posenc", "dims"])}: partial rotary (${spec.posenc.dims} dims); LlamaForCausalLM rotates the whole head`)
  }
  if (innerWidth(b.attention.node, spec.width) !== spec.width) out.push(`at ${b.attention.at}: heads × head size ${innerWidth(b.attention.node, spec.width)} ≠ width ${spec.width}; ${cls} splits the width into its heads`)
  out.push(...new Set(unsupportedOptions(spec, blocks, cls)))
  sameEverywhere(blocks, out)
  return out
}

export const toHuggingFace = (spec: DecoderSpec, weights: Weights, tokenizer: TextTokenizer, note: ExportNote = {}): Exported => {
  const structure = preNormBlocks(spec)
  if (!structure.ok) return { ok: false, problems: [structure.problem] }
  const blocks = structure.blocks
  const family: Family | undefined = spec.posenc.kind === "learned" ? "gpt2" : spec.posenc.kind === "rope" ? "llama" : undefined
  if (family === undefined) {
    return { ok: false, problems: [`at ${formatPath(["posenc"])}: position scheme "${spec.posenc.kind}"; GPT2LMHeadModel has learned positions and LlamaForCausalLM rotary ones`] }
  }
  const problems = problemsOf(spec, family, blocks)
  if (tokenizer.vocabSize !== spec.vocab) problems.push(`tokenizer: ${tokenizer.vocabSize} ids, the model has ${spec.vocab}`)
  // The byte-level BPE's tokenizer.json is Hugging Face's format as it is; the SentencePiece kind is written as Llama's.
  const tokenizerJson = tokenizer instanceof SentencePieceTokenizer ? toLlamaTokenizerJSON(tokenizer) : { json: tokenizer.toJSON() }
  if ("problem" in tokenizerJson) problems.push(tokenizerJson.problem)
  if (problems.length > 0 || "problem" in tokenizerJson) return { ok: false, problems }
  const specialTokens =
    tokenizer instanceof SentencePieceTokenizer ? { bos_token: "<s>", eos_token: "</s>", unk_token: new TextDecoder().decode(tokenizer.pieces[0]) } : { bos_token: "<|endoftext|>", eos_token: "<|endoftext|>" }

  const w = weightsOf(spec, weights)
  const b0 = blocks[0]!
  const heads = b0.attention.node.heads
  const hidden = w(`${b0.ffn.name}.w_in`).shape[1]!
  const tensors: Record<string, Tensor> = {}
  const eot = tokenizer.eotId
  let config: Record<string, unknown>

  if (family === "gpt2") {
    const bias = (name: string, on: boolean, n: number) => (on ? w(name) : zeros(n))
    const ln = (to: string, from: string, node: NormNode) => {
      tensors[`${to}.weight`] = w(`${from}.gain`)
      tensors[`${to}.bias`] = bias(`${from}.bias`, node.kind === "layer" && node.bias, spec.width)
    }
    tensors["transformer.wte.weight"] = w("embed.tokens")
    tensors["transformer.wpe.weight"] = w("posenc.table")
    blocks.forEach((b, i) => {
      const h = `transformer.h.${i}`
      const a = b.attention.name
      const ab = b.attention.node.bias
      const f = b.ffn.name
      const fb = b.ffn.node.bias
      ln(`${h}.ln_1`, b.attentionNorm.name, b.attentionNorm.node)
      tensors[`${h}.attn.c_attn.weight`] = concatColumns([w(`${a}.wq`), w(`${a}.wk`), w(`${a}.wv`)])
      tensors[`${h}.attn.c_attn.bias`] = concatColumns(["bq", "bk", "bv"].map((n) => bias(`${a}.${n}`, ab, spec.width)))
      tensors[`${h}.attn.c_proj.weight`] = w(`${a}.wo`)
      tensors[`${h}.attn.c_proj.bias`] = bias(`${a}.bo`, ab, spec.width)
      ln(`${h}.ln_2`, b.ffnNorm.name, b.ffnNorm.node)
      tensors[`${h}.mlp.c_fc.weight`] = w(`${f}.w_in`)
      tensors[`${h}.mlp.c_fc.bias`] = bias(`${f}.b_in`, fb, hidden)
      tensors[`${h}.mlp.c_proj.weight`] = w(`${f}.w_out`)
      tensors[`${h}.mlp.c_proj.bias`] = bias(`${f}.b_out`, fb, spec.width)
    })
    ln("transformer.ln_f", "norm", spec.norm)
    config = {
      architectures: ["GPT2LMHeadModel"],
      model_type: "gpt2",
      vocab_size: spec.vocab,
      n_positions: spec.context,
      n_embd: spec.width,
      n_layer: blocks.length,
      n_head: heads,
      n_inner: hidden,
      activation_function: gpt2Activation(b0.ffn.node.activation),
      // Dropout is not exported: inference has none, and this project's FFN dropout sits where GPT-2 has none.
      resid_pdrop: 0,
      embd_pdrop: 0,
      attn_pdrop: 0,
      layer_norm_epsilon: spec.norm.eps,
      initializer_range: 0.02,
      scale_attn_weights: true,
      scale_attn_by_inverse_layer_idx: false,
      reorder_and_upcast_attn: false,
      tie_word_embeddings: spec.tied,
      use_cache: true,
      bos_token_id: eot,
      eos_token_id: eot,
      torch_dtype: "float32",
    }
  } else {
    const ab = b0.attention.node.bias
    const fb = b0.ffn.node.bias
    const linear = (to: string, from: string, biasName: string | undefined) => {
      tensors[`${to}.weight`] = transpose(w(from))
      if (biasName !== undefined) tensors[`${to}.bias`] = w(biasName)
    }
    tensors["model.embed_tokens.weight"] = w("embed.tokens")
    blocks.forEach((b, i) => {
      const l = `model.layers.${i}`
      const a = b.attention.name
      const f = b.ffn.name
      tensors[`${l}.input_layernorm.weight`] = w(`${b.attentionNorm.name}.gain`)
      for (const [proj, mat, bias] of [["q", "wq", "bq"], ["k", "wk", "bk"], ["v", "wv", "bv"], ["o", "wo", "bo"]] as const) {
        linear(`${l}.self_attn.${proj}_proj`, `${a}.${mat}`, ab ? `${a}.${bias}` : undefined)
      }
      tensors[`${l}.post_attention_layernorm.weight`] = w(`${b.ffnNorm.name}.gain`)
      linear(`${l}.mlp.gate_proj`, `${f}.w_gate`, fb ? `${f}.b_gate` : undefined)
      linear(`${l}.mlp.up_proj`, `${f}.w_in`, fb ? `${f}.b_in` : undefined)
      linear(`${l}.mlp.down_proj`, `${f}.w_out`, fb ? `${f}.b_out` : undefined)
    })
    tensors["model.norm.weight"] = w("norm.gain")
    // Defined: the llama family is the rotary one.
    const theta = spec.posenc.kind === "rope" ? spec.posenc.base : undefined
    config = {
      architectures: ["LlamaForCausalLM"],
      model_type: "llama",
      vocab_size: spec.vocab,
      hidden_size: spec.width,
      intermediate_size: hidden,
      num_hidden_layers: blocks.length,
      num_attention_heads: heads,
      num_key_value_heads: heads,
      head_dim: spec.width / heads,
      hidden_act: llamaActivation(b0.ffn.node.activation),
      max_position_embeddings: spec.context,
      initializer_range: 0.02,
      rms_norm_eps: spec.norm.eps,
      // transformers before 5 reads rope_theta; 5 reads rope_parameters (and still accepts rope_theta).
      rope_theta: theta,
      rope_parameters: { rope_type: "default", rope_theta: theta },
      attention_bias: ab,
      attention_dropout: 0,
      mlp_bias: fb,
      pretraining_tp: 1,
      tie_word_embeddings: spec.tied,
      use_cache: true,
      bos_token_id: eot,
      eos_token_id: eot,
      torch_dtype: "float32",
    }
  }
  if (!spec.tied) tensors["lm_head.weight"] = transpose(w("head.weight"))

  // Both files say the model is not the run's: transformers keeps unknown config keys, safetensors any metadata string.
  const dropped: Record<string, string> = note.droppedPolicy === undefined ? {} : { dropped_depth_policy: note.droppedPolicy }
  // transformers refuses a safetensors file whose metadata lacks a known "format".
  const safetensors = Effect.runSync(encodeSafetensors(tensors, { format: "pt", ...dropped }, "model.safetensors"))
  const files: ExportFile[] = [
    jsonFile("config.json", { ...config, ...dropped }),
    { name: "model.safetensors", data: safetensors },
    jsonFile("generation_config.json", { _from_model_config: true, bos_token_id: eot, eos_token_id: eot }),
    { name: "tokenizer.json", data: new TextEncoder().encode(tokenizerJson.json) },
    // Without it AutoTokenizer would pick the model type's own tokenizer class (Llama's adds a <s> the byte-level vocabulary lacks).
    jsonFile("tokenizer_config.json", {
      tokenizer_class: "PreTrainedTokenizerFast",
      ...specialTokens,
      model_max_length: spec.context,
      clean_up_tokenization_spaces: false,
    }),
  ]
  return { ok: true, files, summary: { class: family === "gpt2" ? "GPT2LMHeadModel" : "LlamaForCausalLM", tensors: Object.keys(tensors).length } }
}
