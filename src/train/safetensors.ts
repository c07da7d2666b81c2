/**
 * The safetensors file layout (https://github.com/huggingface/safetensors): an 8-byte
 * little-endian u64 header length, a JSON header padded with spaces to an 8-byte boundary,
 * then the raw little-endian tensor bytes, packed back to back in the order of the header's
 * `data_offsets`. We write tensors in sorted-name order; decoding accepts any order as long
 * as the byte ranges tile the data section exactly, and checks everything else on the way.
 *
 * Typed arrays are copied byte for byte, which is little-endian on every platform Node runs
 * on (x64, arm64).
 */
import { Data, Effect } from "effect"

export type Dtype = "F32" | "I32" | "F16" | "BF16"

const dtypeBytes: Record<Dtype, number> = { F32: 4, I32: 4, F16: 2, BF16: 2 }

/** A tensor to write: F32 for Float32Array data, I32 for Int32Array data. */
export interface TensorData {
  readonly shape: readonly number[]
  readonly data: Float32Array | Int32Array
}

/** A decoded tensor; F16 and BF16 are widened to Float32Array, `dtype` says what was stored. */
export interface DecodedTensor {
  readonly dtype: Dtype
  readonly shape: readonly number[]
  readonly data: Float32Array | Int32Array
}

export interface Safetensors {
  readonly tensors: Record<string, DecodedTensor>
  readonly metadata: Record<string, string>
}

export class SafetensorsError extends Data.TaggedError("SafetensorsError")<{
  /** The file (or other label) the bytes belong to. */
  readonly source: string
  readonly tensor: string | undefined
  readonly reason: string
}> {
  override get message(): string {
    return this.tensor === undefined
      ? `${this.source}: ${this.reason}`
      : `${this.source}: tensor "${this.tensor}": ${this.reason}`
  }
}

/** The Rust reference implementation refuses headers above 100 MB; so do we. */
const maxHeaderBytes = 100_000_000

const METADATA_KEY = "__metadata__"

const isShape = (shape: unknown): shape is number[] =>
  Array.isArray(shape) && shape.every((d) => Number.isSafeInteger(d) && d >= 0)

const elementCount = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1)

const bytesOf = (data: Float32Array | Int32Array): Uint8Array =>
  new Uint8Array(data.buffer, data.byteOffset, data.byteLength)

/** Encodes tensors (sorted by name) and optional string metadata into one safetensors file. */
export const encodeSafetensors = (
  tensors: Record<string, TensorData>,
  metadata: Record<string, string> = {},
  source = "safetensors",
): Effect.Effect<Uint8Array, SafetensorsError> =>
  Effect.gen(function* () {
    const names = Object.keys(tensors).sort()
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== "string") {
        return yield* new SafetensorsError({ source, tensor: undefined, reason: `metadata "${key}" is not a string` })
      }
    }
    const header: Record<string, unknown> = {}
    if (Object.keys(metadata).length > 0) header[METADATA_KEY] = metadata
    let offset = 0
    for (const name of names) {
      const fail = (reason: string) => new SafetensorsError({ source, tensor: name, reason })
      if (name === METADATA_KEY) return yield* fail(`the name ${METADATA_KEY} is reserved`)
      const { shape, data } = tensors[name]
      if (!isShape(shape)) return yield* fail(`shape ${JSON.stringify(shape)} is not a list of non-negative integers`)
      const dtype: Dtype = data instanceof Float32Array ? "F32" : "I32"
      if (elementCount(shape) !== data.length) {
        return yield* fail(`shape [${shape.join(", ")}] needs ${elementCount(shape)} elements, data has ${data.length}`)
      }
      header[name] = { dtype, shape: [...shape], data_offsets: [offset, offset + data.byteLength] }
      offset += data.byteLength
    }
    const json = new TextEncoder().encode(JSON.stringify(header))
    const headerLength = Math.ceil(json.length / 8) * 8
    const out = new Uint8Array(8 + headerLength + offset)
    new DataView(out.buffer).setBigUint64(0, BigInt(headerLength), true)
    out.set(json, 8)
    out.fill(0x20, 8 + json.length, 8 + headerLength)
    let at = 8 + headerLength
    for (const name of names) {
      const bytes = bytesOf(tensors[name].data)
      out.set(bytes, at)
      at += bytes.length
    }
    return out
  })

const halfToFloat = (h: number): number => {
  const sign = h & 0x8000 ? -1 : 1
  const exponent = (h >> 10) & 0x1f
  const mantissa = h & 0x3ff
  if (exponent === 0) return sign * mantissa * 2 ** -24
  if (exponent === 0x1f) return mantissa === 0 ? sign * Infinity : NaN
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15)
}

const decodeData = (dtype: Dtype, bytes: Uint8Array): Float32Array | Int32Array => {
  // Copy into a fresh, aligned buffer: offsets inside the file need not be 4-aligned, and a Node
  // Buffer's slice() would be a view into a shared pool.
  const copy = new Uint8Array(bytes)
  switch (dtype) {
    case "F32":
      return new Float32Array(copy.buffer)
    case "I32":
      return new Int32Array(copy.buffer)
    case "F16": {
      const halves = new Uint16Array(copy.buffer)
      return Float32Array.from(halves, halfToFloat)
    }
    case "BF16": {
      const halves = new Uint16Array(copy.buffer)
      const bits = new Uint32Array(halves.length)
      for (let i = 0; i < halves.length; i++) bits[i] = halves[i] << 16
      return new Float32Array(bits.buffer)
    }
  }
}

/** Decodes and validates a whole safetensors file; `source` names it in error messages. */
export const decodeSafetensors = (bytes: Uint8Array, source: string): Effect.Effect<Safetensors, SafetensorsError> =>
  Effect.gen(function* () {
    const fail = (reason: string, tensor?: string) => new SafetensorsError({ source, tensor, reason })
    if (bytes.length < 8) return yield* fail(`file is ${bytes.length} bytes, too short for the 8-byte header length`)
    const headerLength = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true)
    if (headerLength > BigInt(Math.min(maxHeaderBytes, bytes.length - 8))) {
      return yield* fail(`header length ${headerLength} exceeds the ${bytes.length - 8} bytes after the length field`)
    }
    const dataStart = 8 + Number(headerLength)
    let header: unknown
    try {
      header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, dataStart)))
    } catch (e) {
      return yield* fail(`header is not valid UTF-8 JSON (${e instanceof Error ? e.message : String(e)})`)
    }
    if (typeof header !== "object" || header === null || Array.isArray(header)) {
      return yield* fail("header is not a JSON object")
    }
    const dataLength = bytes.length - dataStart
    const metadata: Record<string, string> = {}
    const entries: Array<{ name: string; dtype: Dtype; shape: number[]; begin: number; end: number }> = []
    for (const [name, value] of Object.entries(header)) {
      if (name === METADATA_KEY) {
        if (typeof value !== "object" || value === null || Array.isArray(value)) {
          return yield* fail(`${METADATA_KEY} is not an object`)
        }
        for (const [k, v] of Object.entries(value)) {
          if (typeof v !== "string") return yield* fail(`${METADATA_KEY}.${k} is not a string`)
          metadata[k] = v
        }
        continue
      }
      if (typeof value !== "object" || value === null || Array.isArray(value)) {
        return yield* fail("entry is not an object", name)
      }
      const extra = Object.keys(value).filter((k) => k !== "dtype" && k !== "shape" && k !== "data_offsets")
      if (extra.length > 0) return yield* fail(`unexpected fields ${extra.join(", ")}`, name)
      const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>
      if (typeof dtype !== "string" || !(dtype in dtypeBytes)) {
        return yield* fail(`unsupported dtype ${JSON.stringify(dtype)} (known: ${Object.keys(dtypeBytes).join(", ")})`, name)
      }
      if (!isShape(shape)) return yield* fail(`shape ${JSON.stringify(shape)} is not a list of non-negative integers`, name)
      if (
        !Array.isArray(offsets) ||
        offsets.length !== 2 ||
        !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
        offsets[1] < offsets[0]
      ) {
        return yield* fail(`data_offsets ${JSON.stringify(offsets)} is not a pair [begin, end] with 0 <= begin <= end`, name)
      }
      const [begin, end] = offsets as [number, number]
      if (end > dataLength) return yield* fail(`data_offsets [${begin}, ${end}] run past the ${dataLength} data bytes`, name)
      const expected = elementCount(shape) * dtypeBytes[dtype as Dtype]
      if (end - begin !== expected) {
        return yield* fail(
          `data_offsets [${begin}, ${end}] span ${end - begin} bytes but ${dtype}[${shape.join(", ")}] needs ${expected}`,
          name,
        )
      }
      entries.push({ name, dtype: dtype as Dtype, shape, begin, end })
    }
    const byOffset = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end)
    let expectedBegin = 0
    for (const e of byOffset) {
      if (e.begin !== expectedBegin) {
        return yield* fail(
          e.begin < expectedBegin
            ? `data_offsets [${e.begin}, ${e.end}] overlap the previous tensor, which ends at ${expectedBegin}`
            : `data_offsets [${e.begin}, ${e.end}] leave a gap after byte ${expectedBegin}`,
          e.name,
        )
      }
      expectedBegin = e.end
    }
    if (expectedBegin !== dataLength) {
      return yield* fail(`tensors cover ${expectedBegin} data bytes but the file holds ${dataLength}`)
    }
    const tensors: Record<string, DecodedTensor> = {}
    for (const e of entries) {
      tensors[e.name] = {
        dtype: e.dtype,
        shape: e.shape,
        data: decodeData(e.dtype, bytes.subarray(dataStart + e.begin, dataStart + e.end)),
      }
    }
    return { tensors, metadata }
  })
