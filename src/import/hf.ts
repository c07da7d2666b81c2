import { attention, block, decoder, type DecoderSpec, depth, ffn, norm, posenc } from "../../dsl/index.js"
import type { ActivationTag } from "../../dsl/kinds/activation/index.js"
import { preNormBlocks } from "../export/structure.js"
import { transpose, type Tensor, type Weights } from "../export/weights.js"

/**
 * Import from a Hugging Face transformers directory, the inverse of the hf export:
 * `GPT2LMHeadModel` (learned positions, LayerNorm, an ungated FFN, Conv1D weights [in, out] as
 * the lab stores them) and `LlamaForCausalLM` (rotary positions, RMSNorm, a gated FFN, nn.Linear
 * weights [out, in]; rotate_half, the lab's convention, so nothing is permuted). A config the lab
 * cannot express is refused with the config.json field.
 */
export type HfImported =
  | { readonly ok: true; readonly architecture: string; readonly spec: DecoderSpec; readonly weights: Weights }
  | { readonly ok: false; readonly problems: ReadonlyArray<string> }

export type HfTensors = Readonly<Record<string, { readonly shape: readonly number[]; readonly data: Float32Array }>>

/** transformers' ACT2FN names to the lab's activations: GPT2MLP's ungated ones, LlamaMLP's gate of a GLU. */
const GPT2_ACTIVATIONS: Readonly<Record<string, ActivationTag>> = { relu: "relu", gelu: "gelu", gelu_new: "gelu-tanh", gelu_pytorch_tanh: "gelu-tanh", silu: "silu", relu2: "relu2" }
const LLAMA_ACTIVATIONS: Readonly<Record<string, ActivationTag>> = { silu: "swiglu", gelu: "geglu", relu: "reglu" }

/** Reads config.json's fields, collecting a problem per field that is missing or out of range. */
const fieldsOf = (config: Readonly<Record<string, unknown>>, problems: string[]) => {
  const int = (name: string, fallback?: number): number => {
    const v = config[name] ?? fallback
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v <= 0) {
      problems.push(`config.json field ${name}: ${JSON.stringify(v)}; expected a positive integer`)
      return 1
    }
    return v
  }
  const num = (name: string, fallback?: number): number => {
    const v = config[name] ?? fallback
    if (typeof v !== "number" || !(v > 0)) {
      problems.push(`config.json field ${name}: ${JSON.stringify(v)}; expected a positive number`)
      return 1
    }
    return v
  }
  const expect = (name: string, ok: (v: unknown) => boolean, why: string) => {
    if (!ok(config[name])) problems.push(`config.json field ${name}: ${JSON.stringify(config[name])}; ${why}`)
  }
  return { int, num, expect }
}

const absentOr = (value: unknown) => (v: unknown) => v === undefined || v === null || v === value

/** Columns [from, from + n) of a [rows, cols] matrix. */
const columns = (t: Tensor, from: number, n: number): Float32Array => {
  const [rows, cols] = t.shape as [number, number]
  const out = new Float32Array(rows * n)
  for (let r = 0; r < rows; r++) out.set(t.data.subarray(r * cols + from, r * cols + from + n), r * n)
  return out
}

const gpt2 = (config: Readonly<Record<string, unknown>>, problems: string[]): DecoderSpec => {
  const f = fieldsOf(config, problems)
  const width = f.int("n_embd")
  const hidden = config["n_inner"] === null || config["n_inner"] === undefined ? 4 * width : f.int("n_inner")
  const act = GPT2_ACTIVATIONS[String(config["activation_function"] ?? "gelu_new")]
  if (act === undefined) problems.push(`config.json field activation_function: ${JSON.stringify(config["activation_function"])}; the lab computes ${Object.keys(GPT2_ACTIVATIONS).join(", ")}`)
  f.expect("scale_attn_weights", absentOr(true), "the lab's attention always scales by 1/√(head size)")
  f.expect("scale_attn_by_inverse_layer_idx", absentOr(false), "the lab's attention does not scale by the layer index")
  const eps = f.num("layer_norm_epsilon", 1e-5)
  const heads = f.int("n_head")
  if (width % heads !== 0) problems.push(`config.json field n_head: ${heads} does not divide n_embd ${width}`)
  return decoder({
    vocab: f.int("vocab_size"),
    width,
    context: f.int("n_positions"),
    posenc: posenc("learned"),
    norm: norm("layer", { eps }),
    tied: config["tie_word_embeddings"] !== false,
    layers: depth(f.int("n_layer"), block({ attention: attention("full", { heads }), ffn: ffn(act ?? "gelu", { hidden }), norm: norm("layer", { eps }) })),
  })
}

const llama = (config: Readonly<Record<string, unknown>>, problems: string[]): DecoderSpec => {
  const f = fieldsOf(config, problems)
  const width = f.int("hidden_size")
  const heads = f.int("num_attention_heads")
  const act = LLAMA_ACTIVATIONS[String(config["hidden_act"] ?? "silu")]
  if (act === undefined) problems.push(`config.json field hidden_act: ${JSON.stringify(config["hidden_act"])}; the lab's gated FFNs are ${Object.keys(LLAMA_ACTIVATIONS).join(", ")}`)
  f.expect("num_key_value_heads", absentOr(heads), `≠ num_attention_heads ${heads}; the lab has one key/value head per query head (no grouped-query attention)`)
  f.expect("head_dim", absentOr(width / heads), `≠ hidden_size / num_attention_heads (${width / heads}); the lab's head size is the width over the heads`)
  f.expect("rope_scaling", absentOr(null), "the lab's rotary positions are not scaled")
  if (width % heads !== 0 || (width / heads) % 2 !== 0) problems.push(`config.json field num_attention_heads: ${heads}; hidden_size ${width} must split into heads of an even size`)
  const parameters = config["rope_parameters"] as { rope_theta?: unknown } | undefined
  const theta = typeof config["rope_theta"] === "number" ? config["rope_theta"] : typeof parameters?.rope_theta === "number" ? parameters.rope_theta : 10000
  const eps = f.num("rms_norm_eps", 1e-6)
  const bias = config["attention_bias"] === true
  const mlpBias = config["mlp_bias"] === true
  return decoder({
    vocab: f.int("vocab_size"),
    width,
    context: f.int("max_position_embeddings"),
    posenc: posenc("rope", { base: theta }),
    norm: norm("rms", { eps }),
    tied: config["tie_word_embeddings"] === true,
    layers: depth(
      f.int("num_hidden_layers"),
      block({ attention: attention("full", { heads, bias }), ffn: ffn(act ?? "swiglu", { hidden: f.int("intermediate_size"), bias: mlpBias }), norm: norm("rms", { eps }) }),
    ),
  })
}

export const fromHuggingFace = (config: Readonly<Record<string, unknown>>, tensors: HfTensors): HfImported => {
  const architectures = config["architectures"]
  const architecture = Array.isArray(architectures) && architectures.length === 1 ? String(architectures[0]) : undefined
  if (architecture !== "GPT2LMHeadModel" && architecture !== "LlamaForCausalLM")
    return { ok: false, problems: [`config.json field architectures: ${JSON.stringify(architectures)}; the lab imports ["GPT2LMHeadModel"] and ["LlamaForCausalLM"]`] }
  const problems: string[] = []
  const spec = architecture === "GPT2LMHeadModel" ? gpt2(config, problems) : llama(config, problems)
  if (problems.length > 0) return { ok: false, problems }
  const structure = preNormBlocks(spec)
  if (!structure.ok) throw new Error(`the imported spec is not pre-norm blocks: ${structure.problem}`)

  const missing: string[] = []
  const t = (name: string, shape: readonly number[]): Tensor => {
    const found = tensors[name]
    if (found === undefined || found.shape.join(",") !== shape.join(",")) {
      missing.push(`model.safetensors: ${name} ${found === undefined ? "is missing" : `has shape [${found.shape}]`}; the config makes it [${shape}]`)
      return { shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) }
    }
    return { shape, data: found.data }
  }
  const width = spec.width
  const weights: Record<string, Float32Array> = {}
  const b0 = structure.blocks[0]!
  const hidden = b0.ffn.node.hidden!
  if (architecture === "GPT2LMHeadModel") {
    weights["embed.tokens"] = t("transformer.wte.weight", [spec.vocab, width]).data
    weights["posenc.table"] = t("transformer.wpe.weight", [spec.context, width]).data
    const ln = (to: string, from: string) => {
      weights[`${to}.gain`] = t(`${from}.weight`, [width]).data
      weights[`${to}.bias`] = t(`${from}.bias`, [width]).data
    }
    structure.blocks.forEach((b, i) => {
      const h = `transformer.h.${i}`
      const a = b.attention.name
      const fn = b.ffn.name
      ln(b.attentionNorm.name, `${h}.ln_1`)
      const qkv = t(`${h}.attn.c_attn.weight`, [width, 3 * width])
      const qkvBias = t(`${h}.attn.c_attn.bias`, [3 * width])
      ;(["wq", "wk", "wv"] as const).forEach((m, j) => (weights[`${a}.${m}`] = columns(qkv, j * width, width)))
      ;(["bq", "bk", "bv"] as const).forEach((m, j) => (weights[`${a}.${m}`] = qkvBias.data.slice(j * width, (j + 1) * width)))
      weights[`${a}.wo`] = t(`${h}.attn.c_proj.weight`, [width, width]).data
      weights[`${a}.bo`] = t(`${h}.attn.c_proj.bias`, [width]).data
      ln(b.ffnNorm.name, `${h}.ln_2`)
      weights[`${fn}.w_in`] = t(`${h}.mlp.c_fc.weight`, [width, hidden]).data
      weights[`${fn}.b_in`] = t(`${h}.mlp.c_fc.bias`, [hidden]).data
      weights[`${fn}.w_out`] = t(`${h}.mlp.c_proj.weight`, [hidden, width]).data
      weights[`${fn}.b_out`] = t(`${h}.mlp.c_proj.bias`, [width]).data
    })
    ln("norm", "transformer.ln_f")
  } else {
    weights["embed.tokens"] = t("model.embed_tokens.weight", [spec.vocab, width]).data
    const linear = (to: string, from: string, rows: number, cols: number, bias: string | undefined) => {
      weights[to] = transpose(t(`${from}.weight`, [rows, cols])).data
      if (bias !== undefined) weights[bias] = t(`${from}.bias`, [rows]).data
    }
    structure.blocks.forEach((b, i) => {
      const l = `model.layers.${i}`
      const a = b.attention.name
      const fn = b.ffn.name
      const ab = b.attention.node.bias
      const fb = b.ffn.node.bias
      weights[`${b.attentionNorm.name}.gain`] = t(`${l}.input_layernorm.weight`, [width]).data
      for (const [proj, m, bias] of [["q", "wq", "bq"], ["k", "wk", "bk"], ["v", "wv", "bv"], ["o", "wo", "bo"]] as const) linear(`${a}.${m}`, `${l}.self_attn.${proj}_proj`, width, width, ab ? `${a}.${bias}` : undefined)
      weights[`${b.ffnNorm.name}.gain`] = t(`${l}.post_attention_layernorm.weight`, [width]).data
      linear(`${fn}.w_gate`, `${l}.mlp.gate_proj`, hidden, width, fb ? `${fn}.b_gate` : undefined)
      linear(`${fn}.w_in`, `${l}.mlp.up_proj`, hidden, width, fb ? `${fn}.b_in` : undefined)
      linear(`${fn}.w_out`, `${l}.mlp.down_proj`, width, hidden, fb ? `${fn}.b_out` : undefined)
    })
    weights["norm.gain"] = t("model.norm.weight", [width]).data
  }
  if (!spec.tied) weights["head.weight"] = transpose(t("lm_head.weight", [spec.vocab, width])).data
  if (missing.length > 0) return { ok: false, problems: missing }
  return { ok: true, architecture, spec, weights }
}
