/**
 * Float64 re-implementations of GPT-2 (Radford et al. 2019) and Llama (Touvron et al. 2023)
 * written from the papers, reading parameters by Hugging Face transformers' names and
 * layouts and hyper-parameters from transformers' config.json fields. They share no code
 * with the project's interpreter, so they check what an exported directory means to
 * another runtime.
 */

export interface F64 {
  readonly shape: readonly number[]
  readonly data: Float64Array
}

export type Lookup = (name: string) => F64

export type Config = Readonly<Record<string, unknown>>

const num = (config: Config, key: string): number => {
  const v = config[key]
  if (typeof v !== "number") throw new Error(`config.json: ${key} is not a number`)
  return v
}

/** y = x·W for Conv1D weights [in, out] (GPT-2). */
const conv1d = (x: Float64Array, w: F64, b?: F64): Float64Array => {
  const [n, m] = w.shape as [number, number]
  const y = new Float64Array(m)
  for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) y[j] += x[i]! * w.data[i * m + j]!
  if (b) for (let j = 0; j < m; j++) y[j] += b.data[j]!
  return y
}

/** y = W·x for nn.Linear weights [out, in] (Llama, and every LM head). */
const linear = (x: Float64Array, w: F64, b?: F64): Float64Array => {
  const [m, n] = w.shape as [number, number]
  const y = new Float64Array(m)
  for (let o = 0; o < m; o++) {
    let s = b ? b.data[o]! : 0
    for (let i = 0; i < n; i++) s += w.data[o * n + i]! * x[i]!
    y[o] = s
  }
  return y
}

const layerNorm = (x: Float64Array, g: F64, b: F64, eps: number): Float64Array => {
  const mean = x.reduce((s, v) => s + v, 0) / x.length
  const variance = x.reduce((s, v) => s + (v - mean) ** 2, 0) / x.length
  const r = 1 / Math.sqrt(variance + eps)
  return x.map((v, i) => (v - mean) * r * g.data[i]! + b.data[i]!)
}

const rmsNorm = (x: Float64Array, g: F64, eps: number): Float64Array => {
  const r = 1 / Math.sqrt(x.reduce((s, v) => s + v * v, 0) / x.length + eps)
  return x.map((v, i) => v * r * g.data[i]!)
}

/** erf to ~1e-15: its Maclaurin series for |x| < 3, the continued fraction of erfc beyond. */
export const erf = (x: number): number => {
  const a = Math.abs(x)
  if (a < 3) {
    let term = a
    let sum = a
    for (let n = 1; n < 200 && Math.abs(term) > 1e-17 * Math.abs(sum); n++) {
      term *= (-a * a) / n
      sum += term / (2 * n + 1)
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum
  }
  let f = 0
  for (let k = 60; k >= 1; k--) f = k / 2 / (a + f)
  return Math.sign(x) * (1 - Math.exp(-a * a) / Math.sqrt(Math.PI) / (a + f))
}

/** transformers' ACT2FN entries used here, from their definitions. */
const activations: Record<string, (x: number) => number> = {
  relu: (x) => Math.max(0, x),
  relu2: (x) => Math.max(0, x) ** 2,
  gelu: (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
  gelu_new: (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))),
  silu: (x) => x / (1 + Math.exp(-x)),
}

const activation = (name: unknown): ((x: number) => number) => {
  const f = typeof name === "string" ? activations[name] : undefined
  if (f === undefined) throw new Error(`reference: no activation ${String(name)}`)
  return f
}

/** Causal multi-head attention over whole sequences: q, k, v per position, heads contiguous. */
const attend = (q: Float64Array[], k: Float64Array[], v: Float64Array[], heads: number): Float64Array[] => {
  const width = q[0]!.length
  const d = width / heads
  return q.map((qt, t) => {
    const out = new Float64Array(width)
    for (let h = 0; h < heads; h++) {
      const scores = Array.from({ length: t + 1 }, (_, s) => {
        let dot = 0
        for (let i = h * d; i < (h + 1) * d; i++) dot += qt[i]! * k[s]![i]!
        return dot / Math.sqrt(d)
      })
      const max = Math.max(...scores)
      const e = scores.map((x) => Math.exp(x - max))
      const z = e.reduce((a, b) => a + b, 0)
      for (let s = 0; s <= t; s++) for (let i = h * d; i < (h + 1) * d; i++) out[i] += (e[s]! / z) * v[s]![i]!
    }
    return out
  })
}

const add = (a: Float64Array, b: Float64Array): Float64Array => a.map((x, i) => x + b[i]!)

const row = (t: F64, r: number): Float64Array => {
  const n = t.shape[1]!
  return t.data.slice(r * n, (r + 1) * n)
}

/** GPT2LMHeadModel's logits [T][V] for ids. */
export const gpt2Logits = (config: Config, p: Lookup, ids: readonly number[]): Float64Array[] => {
  const heads = num(config, "n_head")
  const eps = num(config, "layer_norm_epsilon")
  const act = activation(config["activation_function"])
  const width = num(config, "n_embd")
  let h = ids.map((id, t) => add(row(p("transformer.wte.weight"), id), row(p("transformer.wpe.weight"), t)))
  for (let l = 0; l < num(config, "n_layer"); l++) {
    const b = `transformer.h.${l}`
    const x = h.map((ht) => layerNorm(ht, p(`${b}.ln_1.weight`), p(`${b}.ln_1.bias`), eps))
    const qkv = x.map((xt) => conv1d(xt, p(`${b}.attn.c_attn.weight`), p(`${b}.attn.c_attn.bias`)))
    const part = (i: number) => qkv.map((y) => y.slice(i * width, (i + 1) * width))
    const a = attend(part(0), part(1), part(2), heads)
    h = h.map((ht, t) => add(ht, conv1d(a[t]!, p(`${b}.attn.c_proj.weight`), p(`${b}.attn.c_proj.bias`))))
    h = h.map((ht) => {
      const m = layerNorm(ht, p(`${b}.ln_2.weight`), p(`${b}.ln_2.bias`), eps)
      const hidden = conv1d(m, p(`${b}.mlp.c_fc.weight`), p(`${b}.mlp.c_fc.bias`)).map(act)
      return add(ht, conv1d(hidden, p(`${b}.mlp.c_proj.weight`), p(`${b}.mlp.c_proj.bias`)))
    })
  }
  const head = config["tie_word_embeddings"] === false ? p("lm_head.weight") : p("transformer.wte.weight")
  return h.map((ht) => linear(layerNorm(ht, p("transformer.ln_f.weight"), p("transformer.ln_f.bias"), eps), head))
}

/**
 * Rotary embedding (Su et al. 2021) of one head's vector at position pos: pair j, at angle
 * pos·θ^(−2j/d), is (j, j + d/2) in Llama's rotate_half convention and (2j, 2j + 1) in the
 * paper's (and run.c's) interleaved one.
 */
const rotate = (x: Float64Array, start: number, d: number, pos: number, theta: number, pairs: "half" | "interleaved"): void => {
  for (let j = 0; j < d / 2; j++) {
    const angle = pos * theta ** ((-2 * j) / d)
    const [a, b] = pairs === "half" ? [start + j, start + j + d / 2] : [start + 2 * j, start + 2 * j + 1]
    const x0 = x[a]!
    const x1 = x[b]!
    x[a] = x0 * Math.cos(angle) - x1 * Math.sin(angle)
    x[b] = x0 * Math.sin(angle) + x1 * Math.cos(angle)
  }
}

/** LlamaForCausalLM's logits [T][V] for ids; `pairs` picks the rotary convention. */
export const llamaLogits = (config: Config, p: Lookup, ids: readonly number[], pairs: "half" | "interleaved" = "half"): Float64Array[] => {
  const heads = num(config, "num_attention_heads")
  const eps = num(config, "rms_norm_eps")
  const theta = num(config, "rope_theta")
  const d = num(config, "hidden_size") / heads
  const act = activation(config["hidden_act"])
  const biased = (on: unknown, name: string) => (on === true ? p(name) : undefined)
  let h = ids.map((id) => row(p("model.embed_tokens.weight"), id))
  for (let l = 0; l < num(config, "num_hidden_layers"); l++) {
    const b = `model.layers.${l}`
    const proj = (x: Float64Array, name: string) => linear(x, p(`${b}.self_attn.${name}.weight`), biased(config["attention_bias"], `${b}.self_attn.${name}.bias`))
    const x = h.map((ht) => rmsNorm(ht, p(`${b}.input_layernorm.weight`), eps))
    const q = x.map((xt) => proj(xt, "q_proj"))
    const k = x.map((xt) => proj(xt, "k_proj"))
    const v = x.map((xt) => proj(xt, "v_proj"))
    for (let t = 0; t < ids.length; t++) {
      for (let hd = 0; hd < heads; hd++) {
        rotate(q[t]!, hd * d, d, t, theta, pairs)
        rotate(k[t]!, hd * d, d, t, theta, pairs)
      }
    }
    const a = attend(q, k, v, heads)
    h = h.map((ht, t) => add(ht, proj(a[t]!, "o_proj")))
    h = h.map((ht) => {
      const m = rmsNorm(ht, p(`${b}.post_attention_layernorm.weight`), eps)
      const mlp = (name: string, y: Float64Array) => linear(y, p(`${b}.mlp.${name}.weight`), biased(config["mlp_bias"], `${b}.mlp.${name}.bias`))
      const up = mlp("up_proj", m)
      const gated = mlp("gate_proj", m).map((g, i) => act(g) * up[i]!)
      return add(ht, mlp("down_proj", gated))
    })
  }
  const head = config["tie_word_embeddings"] === true ? p("model.embed_tokens.weight") : p("lm_head.weight")
  return h.map((ht) => linear(rmsNorm(ht, p("model.norm.weight"), eps), head))
}
