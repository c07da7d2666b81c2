import type { F64, Lookup } from "./reference.js"

/**
 * A GGUF reader written from ggml's docs/gguf.md, independent of the writer: the header,
 * every metadata value kind, the tensor infos and their data, dequantized from F32, F16 and
 * Q8_0 as ggml does. The tests read exported files with it, and name the tensors as
 * transformers' Llama does for the float64 reference.
 */
export type GgufMeta = string | number | boolean | bigint | GgufMeta[]

export interface GgufTensorInfo {
  readonly name: string
  readonly dims: number[]
  readonly type: number
  readonly offset: number
  readonly values: Float32Array
}

export interface GgufRead {
  readonly version: number
  readonly metadata: Map<string, GgufMeta>
  readonly tensors: Map<string, GgufTensorInfo>
  readonly dataStart: number
}

export const fromHalf = (h: number): number => {
  const sign = h & 0x8000 ? -1 : 1
  const exp = (h >>> 10) & 0x1f
  const mant = h & 0x3ff
  if (exp === 0) return sign * mant * 2 ** -24
  if (exp === 0x1f) return mant === 0 ? sign * Infinity : NaN
  return sign * (1 + mant / 1024) * 2 ** (exp - 15)
}

export const readGguf = (bytes: Uint8Array): GgufRead => {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let at = 0
  const u32 = () => ((at += 4), view.getUint32(at - 4, true))
  const u64 = () => ((at += 8), Number(view.getBigUint64(at - 8, true)))
  const str = () => {
    const n = u64()
    at += n
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(at - n, at))
  }
  const scalar = (type: number): GgufMeta => {
    const read: Record<number, () => GgufMeta> = {
      0: () => view.getUint8(at++),
      1: () => view.getInt8(at++),
      2: () => ((at += 2), view.getUint16(at - 2, true)),
      3: () => ((at += 2), view.getInt16(at - 2, true)),
      4: u32,
      5: () => ((at += 4), view.getInt32(at - 4, true)),
      6: () => ((at += 4), view.getFloat32(at - 4, true)),
      7: () => view.getUint8(at++) !== 0,
      8: str,
      10: () => ((at += 8), view.getBigUint64(at - 8, true)),
      11: () => ((at += 8), view.getBigInt64(at - 8, true)),
      12: () => ((at += 8), view.getFloat64(at - 8, true)),
    }
    if (type === 9) {
      const inner = u32()
      return Array.from({ length: u64() }, () => scalar(inner))
    }
    const f = read[type]
    if (f === undefined) throw new Error(`gguf: unknown value type ${type} at byte ${at}`)
    return f()
  }
  if (new TextDecoder().decode(bytes.subarray(0, 4)) !== "GGUF") throw new Error("gguf: bad magic")
  at = 4
  const version = u32()
  const nTensors = u64()
  const nKv = u64()
  const metadata = new Map<string, GgufMeta>()
  for (let i = 0; i < nKv; i++) {
    const key = str()
    metadata.set(key, scalar(u32()))
  }
  const infos = Array.from({ length: nTensors }, () => {
    const name = str()
    const dims = Array.from({ length: u32() }, u64)
    return { name, dims, type: u32(), offset: u64() }
  })
  const alignment = Number(metadata.get("general.alignment") ?? 32)
  const dataStart = Math.ceil(at / alignment) * alignment
  const tensors = new Map<string, GgufTensorInfo>()
  for (const t of infos) {
    const count = t.dims.reduce((a, b) => a * b, 1)
    const base = dataStart + t.offset
    const values = new Float32Array(count)
    if (t.type === 0) for (let i = 0; i < count; i++) values[i] = view.getFloat32(base + 4 * i, true)
    else if (t.type === 1) for (let i = 0; i < count; i++) values[i] = fromHalf(view.getUint16(base + 2 * i, true))
    else if (t.type === 8) {
      for (let b = 0; b < count / 32; b++) {
        const d = fromHalf(view.getUint16(base + 34 * b, true))
        for (let j = 0; j < 32; j++) values[32 * b + j] = d * view.getInt8(base + 34 * b + 2 + j)
      }
    } else throw new Error(`gguf: tensor ${t.name} has type ${t.type}, which this reader does not decode`)
    tensors.set(t.name, { ...t, values })
  }
  return { version, metadata, tensors, dataStart }
}

/** The file's llama tensors under transformers' Llama names, [out, in] as there; and the config the float64 reference reads. */
export const ggufAsLlama = (file: GgufRead): { config: Record<string, unknown>; lookup: Lookup } => {
  const m = (key: string) => file.metadata.get(`llama.${key}`) as number
  const tensor = (name: string): F64 => {
    const t = file.tensors.get(name)
    if (t === undefined) throw new Error(`model.gguf has no tensor ${name}`)
    return { shape: [...t.dims].reverse(), data: Float64Array.from(t.values) }
  }
  const names: Record<string, string> = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
  }
  const perLayer: Record<string, string> = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
  }
  const lookup: Lookup = (name) => {
    const layer = /^model\.layers\.(\d+)\.(.+)$/.exec(name)
    return tensor(layer ? `blk.${layer[1]}.${perLayer[layer[2]!]}` : names[name]!)
  }
  const config = {
    num_attention_heads: m("attention.head_count"),
    num_hidden_layers: m("block_count"),
    hidden_size: m("embedding_length"),
    rms_norm_eps: m("attention.layer_norm_rms_epsilon"),
    rope_theta: m("rope.freq_base"),
    hidden_act: "silu",
    tie_word_embeddings: !file.tensors.has("output.weight"),
  }
  return { config, lookup }
}
