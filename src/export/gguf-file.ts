import { encodeTensor, type GgmlType, ggmlTypes } from "./ggml.js"

/**
 * The GGUF container (ggml's docs/gguf.md), version 3, little-endian: the magic "GGUF", the
 * version, the tensor and metadata counts (u64), the metadata as typed key/value pairs, the
 * tensor infos (name, dimensions with ne0 the contiguous one, ggml type, offset into the data
 * section), then the data section, each tensor at a multiple of `general.alignment` bytes.
 */
export const GGUF_VERSION = 3
export const GGUF_ALIGNMENT = 32

/** gguf_type codes of the value kinds this writer emits. */
const valueTypes = { u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9 } as const

export type GgufValue =
  | { readonly u32: number }
  | { readonly f32: number }
  | { readonly bool: boolean }
  | { readonly string: string }
  | { readonly strings: ReadonlyArray<string> }
  | { readonly i32s: ArrayLike<number> }

export interface GgufTensor {
  readonly name: string
  /** ggml order: ne0 (the contiguous dimension) first. */
  readonly dims: readonly number[]
  readonly type: GgmlType
  readonly data: Float32Array
}

/** Little-endian bytes appended in chunks. */
class Bytes {
  private readonly chunks: Uint8Array[] = []
  length = 0
  private readonly utf8 = new TextEncoder()

  push(chunk: Uint8Array): void {
    this.chunks.push(chunk)
    this.length += chunk.length
  }

  private fixed(size: number, set: (view: DataView) => void): void {
    const chunk = new Uint8Array(size)
    set(new DataView(chunk.buffer))
    this.push(chunk)
  }

  u32(x: number): void {
    this.fixed(4, (v) => v.setUint32(0, x, true))
  }

  i32(x: number): void {
    this.fixed(4, (v) => v.setInt32(0, x, true))
  }

  u64(x: number): void {
    this.fixed(8, (v) => v.setBigUint64(0, BigInt(x), true))
  }

  f32(x: number): void {
    this.fixed(4, (v) => v.setFloat32(0, x, true))
  }

  string(s: string): void {
    const bytes = this.utf8.encode(s)
    this.u64(bytes.length)
    this.push(bytes)
  }

  padTo(alignment: number): void {
    const pad = (alignment - (this.length % alignment)) % alignment
    if (pad > 0) this.push(new Uint8Array(pad))
  }

  concat(): Uint8Array {
    const out = new Uint8Array(this.length)
    this.chunks.reduce((at, c) => (out.set(c, at), at + c.length), 0)
    return out
  }
}

const writeValue = (out: Bytes, value: GgufValue): void => {
  if ("u32" in value) {
    out.u32(valueTypes.u32)
    out.u32(value.u32)
  } else if ("f32" in value) {
    out.u32(valueTypes.f32)
    out.f32(value.f32)
  } else if ("bool" in value) {
    out.u32(valueTypes.bool)
    out.push(Uint8Array.of(value.bool ? 1 : 0))
  } else if ("string" in value) {
    out.u32(valueTypes.string)
    out.string(value.string)
  } else if ("strings" in value) {
    out.u32(valueTypes.array)
    out.u32(valueTypes.string)
    out.u64(value.strings.length)
    for (const s of value.strings) out.string(s)
  } else {
    out.u32(valueTypes.array)
    out.u32(valueTypes.i32)
    out.u64(value.i32s.length)
    for (let i = 0; i < value.i32s.length; i++) out.i32(value.i32s[i]!)
  }
}

/** The file: `general.alignment` is written first, then `metadata` in its order, then the tensors in theirs. */
export const encodeGguf = (metadata: ReadonlyArray<readonly [string, GgufValue]>, tensors: ReadonlyArray<GgufTensor>): Uint8Array => {
  const kv: ReadonlyArray<readonly [string, GgufValue]> = [["general.alignment", { u32: GGUF_ALIGNMENT }], ...metadata]
  const out = new Bytes()
  out.push(new TextEncoder().encode("GGUF"))
  out.u32(GGUF_VERSION)
  out.u64(tensors.length)
  out.u64(kv.length)
  for (const [key, value] of kv) {
    out.string(key)
    writeValue(out, value)
  }
  const data = tensors.map((t) => encodeTensor(t.data, t.type))
  let offset = 0
  tensors.forEach((t, i) => {
    out.string(t.name)
    out.u32(t.dims.length)
    for (const d of t.dims) out.u64(d)
    out.u32(ggmlTypes[t.type].id)
    out.u64(offset)
    offset += Math.ceil(data[i]!.length / GGUF_ALIGNMENT) * GGUF_ALIGNMENT
  })
  for (const d of data) {
    out.padTo(GGUF_ALIGNMENT)
    out.push(d)
  }
  out.padTo(GGUF_ALIGNMENT)
  return out.concat()
}
