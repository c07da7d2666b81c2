import * as tf from "@tensorflow/tfjs"
import { beforeAll, describe, expect, it } from "vitest"
import { activation, attention, block, decoder, type DecoderSpec, depth, ffn, gpt2, llama, norm, posenc, residual } from "../../dsl/index.js"
import { toHuggingFace } from "../../src/export/hf.js"
import { compile } from "../../src/model/index.js"
import { fixtureTokenizer, jsonOf, fileOf, maxAbsDiff, projectLogits, randomWeights, safetensorsLookup, tensorsOf } from "./fixtures.js"
import { gpt2Logits, llamaLogits } from "./reference.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const tokenizer = fixtureTokenizer()
const vocab = tokenizer.vocabSize
const base = { vocab, width: 32, context: 16, layers: 2, heads: 4 } as const
const ids = [256, 72, 300, 5, 677, 412, 33, 33, 90, 256, 140, 600]

const learned = (o: { act: Parameters<typeof ffn>[0]; tied: boolean; attnBias: boolean; lnBias: boolean }): DecoderSpec =>
  decoder({
    ...base,
    layers: depth(2, block({ attention: attention("full", { heads: 4, bias: o.attnBias }), ffn: ffn(o.act, { mult: 3 }), norm: norm("layer", { bias: o.lnBias }) })),
    norm: norm("layer", { bias: o.lnBias }),
    tied: o.tied,
  })

const rotary = (o: { act: "swiglu" | "geglu" | "reglu"; tied: boolean; bias: boolean; base: number; eps: number }): DecoderSpec =>
  decoder({
    ...base,
    posenc: posenc("rope", { base: o.base }),
    norm: norm("rms", { eps: o.eps }),
    tied: o.tied,
    layers: depth(2, block({ attention: attention("full", { heads: 4, bias: o.bias }), ffn: ffn(o.act, { bias: o.bias }), norm: norm("rms", { eps: o.eps }) })),
  })

/** Exports with random weights; returns the reference's and the project's logits and the exported files. */
const exported = (spec: DecoderSpec, seed: number) => {
  // Weights of std 0.2 give logits up to about 5, whose float32 error stays near 2e-6.
  const weights = randomWeights(spec, seed, 0.2)
  const result = toHuggingFace(spec, weights, tokenizer)
  if (!result.ok) throw new Error(result.problems.join("\n"))
  const params = tensorsOf(spec, weights)
  const ours = projectLogits(compile(spec), params, ids)
  tf.dispose(Object.values(params))
  const config = jsonOf(result.files, "config.json")
  const { lookup, names } = safetensorsLookup(fileOf(result.files, "model.safetensors"))
  return { ours, config, lookup, names, files: result.files }
}

describe("hf export: GPT2LMHeadModel", () => {
  const cases: Array<[string, DecoderSpec, string]> = [
    ["the base decoder (ReLU, tied)", gpt2({ ...base, activation: "relu" }), "relu"],
    ["GELU-tanh, untied, no attention or LayerNorm biases", learned({ act: "gelu-tanh", tied: false, attnBias: false, lnBias: false }), "gelu_new"],
    ["exact GELU", learned({ act: "gelu", tied: true, attnBias: true, lnBias: true }), "gelu"],
    ["SiLU (swish β=1)", learned({ act: activation("swish"), tied: false, attnBias: true, lnBias: true }), "silu"],
    ["ReLU²", learned({ act: "relu2", tied: true, attnBias: true, lnBias: true }), "relu2"],
  ]
  for (const [name, spec, act] of cases) {
    it(`${name}: a float64 GPT-2 reading the export gives the project's logits`, () => {
      const before = tf.memory().numTensors
      const { ours, config, lookup, names } = exported(spec, 1)
      expect(config["activation_function"]).toBe(act)
      expect(maxAbsDiff(gpt2Logits(config, lookup, ids), ours)).toBeLessThan(1e-5)
      // Exactly the parameters transformers' GPT-2 modules declare (plus lm_head when untied).
      const perLayer = ["ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"]
      const expected = ["transformer.wte.weight", "transformer.wpe.weight", ...[0, 1].flatMap((l) => perLayer.map((p) => `transformer.h.${l}.${p}`)), "transformer.ln_f.weight", "transformer.ln_f.bias", ...(spec.tied ? [] : ["lm_head.weight"])]
      expect(names.sort()).toEqual(expected.sort())
      expect(tf.memory().numTensors).toBe(before)
    })
  }

  it("writes the config fields GPT2Config reads, with the model's sizes", () => {
    const { config, lookup, files } = exported(learned({ act: "gelu-tanh", tied: false, attnBias: true, lnBias: true }), 2)
    expect(config).toMatchObject({
      architectures: ["GPT2LMHeadModel"],
      model_type: "gpt2",
      vocab_size: vocab,
      n_positions: 16,
      n_embd: 32,
      n_layer: 2,
      n_head: 4,
      n_inner: 96,
      activation_function: "gelu_new",
      layer_norm_epsilon: 1e-5,
      tie_word_embeddings: false,
      bos_token_id: tokenizer.eotId,
      eos_token_id: tokenizer.eotId,
    })
    // Conv1D weights are [in, out]; the LM head is nn.Linear [vocab, width].
    expect(lookup("transformer.h.0.attn.c_attn.weight").shape).toEqual([32, 96])
    expect(lookup("transformer.h.0.mlp.c_proj.weight").shape).toEqual([96, 32])
    expect(lookup("lm_head.weight").shape).toEqual([vocab, 32])
    expect(new TextDecoder().decode(fileOf(files, "tokenizer.json"))).toBe(tokenizer.toJSON())
    expect(jsonOf(files, "generation_config.json")).toMatchObject({ bos_token_id: tokenizer.eotId, eos_token_id: tokenizer.eotId })
  })
})

describe("hf export: LlamaForCausalLM", () => {
  const cases: Array<[string, DecoderSpec, string]> = [
    ["the llama preset (SwiGLU, untied)", llama(base), "silu"],
    ["GEGLU, tied, biases, rotary base 500, epsilon 1e-6", rotary({ act: "geglu", tied: true, bias: true, base: 500, eps: 1e-6 }), "gelu"],
    ["ReGLU", rotary({ act: "reglu", tied: false, bias: false, base: 10000, eps: 1e-5 }), "relu"],
  ]
  for (const [name, spec, act] of cases) {
    it(`${name}: a float64 Llama reading the export gives the project's logits`, () => {
      const before = tf.memory().numTensors
      const { ours, config, lookup, names } = exported(spec, 3)
      expect(config["hidden_act"]).toBe(act)
      expect(maxAbsDiff(llamaLogits(config, lookup, ids), ours)).toBeLessThan(1e-5)
      const biased = config["attention_bias"] === true
      const perLayer = [
        "input_layernorm.weight",
        "post_attention_layernorm.weight",
        ...["q", "k", "v", "o"].flatMap((p) => [`self_attn.${p}_proj.weight`, ...(biased ? [`self_attn.${p}_proj.bias`] : [])]),
        ...["gate", "up", "down"].flatMap((p) => [`mlp.${p}_proj.weight`, ...(config["mlp_bias"] === true ? [`mlp.${p}_proj.bias`] : [])]),
      ]
      const expected = ["model.embed_tokens.weight", ...[0, 1].flatMap((l) => perLayer.map((p) => `model.layers.${l}.${p}`)), "model.norm.weight", ...(spec.tied ? [] : ["lm_head.weight"])]
      expect(names.sort()).toEqual(expected.sort())
      expect(tf.memory().numTensors).toBe(before)
    })
  }

  it("writes the config fields LlamaConfig reads, with the model's sizes", () => {
    const { config, lookup } = exported(rotary({ act: "geglu", tied: true, bias: true, base: 500, eps: 1e-6 }), 4)
    expect(config).toMatchObject({
      architectures: ["LlamaForCausalLM"],
      model_type: "llama",
      vocab_size: vocab,
      hidden_size: 32,
      intermediate_size: 88,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 4,
      head_dim: 8,
      hidden_act: "gelu",
      max_position_embeddings: 16,
      rms_norm_eps: 1e-6,
      rope_theta: 500,
      rope_parameters: { rope_type: "default", rope_theta: 500 },
      attention_bias: true,
      mlp_bias: true,
      tie_word_embeddings: true,
    })
    // nn.Linear weights are [out, in].
    expect(lookup("model.layers.0.mlp.down_proj.weight").shape).toEqual([32, 88])
    expect(lookup("model.layers.0.mlp.up_proj.weight").shape).toEqual([88, 32])
  })
})

describe("hf export: models neither class can express", () => {
  const cases: Array<[string, DecoderSpec, RegExp]> = [
    ["ALiBi positions", decoder({ ...base, posenc: posenc("alibi"), layers: depth(2, block({ attention: attention("full", { heads: 4 }), ffn: ffn("gelu") })) }), /position scheme "alibi"/],
    ["sliding-window attention", decoder({ ...base, layers: depth(2, block({ attention: attention("sliding-window", { heads: 4, window: 4 }), ffn: ffn("gelu") })) }), /attention "sliding-window"; GPT2LMHeadModel computes full causal attention only/],
    ["a gated FFN with learned positions", learned({ act: "swiglu", tied: true, attnBias: true, lnBias: true }), /activation "swiglu".*GPT2MLP/],
    ["an ungated FFN with rotary positions", decoder({ ...base, posenc: posenc("rope"), norm: norm("rms"), layers: depth(2, block({ attention: attention("full", { heads: 4 }), ffn: ffn("gelu"), norm: norm("rms") })) }), /activation "gelu"; LlamaMLP is gated/],
    ["RMSNorm with learned positions", decoder({ ...base, norm: norm("rms"), layers: depth(2, block({ attention: attention("full", { heads: 4 }), ffn: ffn("gelu"), norm: norm("rms") })) }), /norm "rms"; GPT2LMHeadModel uses LayerNorm/],
    ["partial rotary", decoder({ ...base, posenc: posenc("rope", { dims: 4 }), norm: norm("rms"), layers: depth(2, block({ attention: attention("full", { heads: 4 }), ffn: ffn("swiglu"), norm: norm("rms") })) }), /partial rotary/],
    ["norms with different epsilons", decoder({ ...base, posenc: posenc("rope"), norm: norm("rms", { eps: 1e-6 }), layers: depth(2, block({ attention: attention("full", { heads: 4 }), ffn: ffn("swiglu"), norm: norm("rms", { eps: 1e-5 }) })) }), /different epsilons/],
    ["heads × head size other than the width", decoder({ ...base, layers: depth(2, block({ attention: attention("full", { heads: 4, headDim: 4 }), ffn: ffn("gelu") })) }), /heads × head size 16 ≠ width 32; GPT2LMHeadModel splits the width into its heads/],
    ["QK-norm", decoder({ ...base, layers: depth(2, block({ attention: attention("full", { heads: 4, qkNorm: true }), ffn: ffn("gelu") })) }), /^at \["layers","block","layers",0,"body",1\]: qkNorm; GPT2LMHeadModel does not normalise queries and keys$/],
    ["a logit soft-cap", decoder({ ...base, posenc: posenc("rope"), norm: norm("rms"), softcap: 30, layers: depth(2, block({ attention: attention("full", { heads: 4 }), ffn: ffn("swiglu"), norm: norm("rms") })) }), /^at \["softcap"\]: logit soft-cap 30; LlamaForCausalLM does not cap the logits$/],
    ["a post-norm block", decoder({ ...base, layers: depth(2, block([residual([attention("full", { heads: 4 })]), norm("layer"), residual([ffn("gelu")]), norm("layer")])) }), /not the pre-norm block/],
  ]
  for (const [name, spec, reason] of cases) {
    it(`refuses ${name}, saying why`, () => {
      const result = toHuggingFace(spec, randomWeights(spec, 1), tokenizer)
      expect(result.ok).toBe(false)
      if (!result.ok) expect(result.problems.join("\n")).toMatch(reason)
    })
  }
})
