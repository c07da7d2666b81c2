/**
 * ggml's tensor encodings that the GGUF export writes, bit for bit as ggml's reference
 * quantizers compute them (ggml-quants.c, quantize_row_q8_0_ref; ggml-impl.h's fp32→fp16):
 * F32, F16 (round to nearest even) and Q8_0, blocks of 32 values along a row stored as one
 * f16 scale d = max|x| / 127 and 32 int8 q = round(x / d) (34 bytes a block).
 */
export const ggmlTypes = {
  f32: { id: 0, fileType: 0 },
  f16: { id: 1, fileType: 1 },
  q8_0: { id: 8, fileType: 7 },
} as const

export type GgmlType = keyof typeof ggmlTypes

export const Q8_0_BLOCK = 32
const Q8_0_BYTES = 2 + Q8_0_BLOCK

const f32 = new Float32Array(1)
const u32 = new Uint32Array(f32.buffer)

/** IEEE half bits of x, rounded to nearest even; overflow to infinity. */
export const toHalf = (x: number): number => {
  f32[0] = x
  const b = u32[0]!
  const sign = (b >>> 16) & 0x8000
  const exp = (b >>> 23) & 0xff
  let mant = b & 0x7fffff
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0)
  const e = exp - 127 + 15
  if (e >= 0x1f) return sign | 0x7c00
  if (e <= 0) {
    // Subnormal: the value is m · 2^-24.
    if (e < -10) return sign
    mant |= 0x800000
    const shift = 14 - e
    const half = mant >>> shift
    const rem = mant & ((1 << shift) - 1)
    const mid = 1 << (shift - 1)
    return sign | (half + (rem > mid || (rem === mid && (half & 1) === 1) ? 1 : 0))
  }
  const half = (e << 10) | (mant >>> 13)
  const rem = mant & 0x1fff
  // A carry out of the mantissa correctly bumps the exponent (up to infinity).
  return sign | (half + (rem > 0x1000 || (rem === 0x1000 && (half & 1) === 1) ? 1 : 0))
}

/** C's roundf: halves away from zero. */
const roundAway = (x: number): number => Math.sign(x) * Math.round(Math.abs(x))

/** Values as Q8_0 blocks of 32 consecutive values; blocks never straddle rows when the row length is a multiple of 32. */
export const quantizeQ8_0 = (data: Float32Array): Uint8Array => {
  const blocks = data.length / Q8_0_BLOCK
  const out = new Uint8Array(blocks * Q8_0_BYTES)
  const view = new DataView(out.buffer)
  for (let i = 0; i < blocks; i++) {
    let amax = 0
    for (let j = 0; j < Q8_0_BLOCK; j++) amax = Math.max(amax, Math.abs(data[i * Q8_0_BLOCK + j]!))
    // In float32, as ggml computes them.
    const d = Math.fround(amax / 127)
    const id = d !== 0 ? Math.fround(1 / d) : 0
    view.setUint16(i * Q8_0_BYTES, toHalf(d), true)
    for (let j = 0; j < Q8_0_BLOCK; j++) view.setInt8(i * Q8_0_BYTES + 2 + j, roundAway(Math.fround(data[i * Q8_0_BLOCK + j]! * id)))
  }
  return out
}

/** The bytes of `data` in `type`; for q8_0 its length must be a multiple of 32 (rows that are). */
export const encodeTensor = (data: Float32Array, type: GgmlType): Uint8Array => {
  if (type === "f32") return new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength))
  if (type === "f16") {
    const out = new Uint16Array(data.length)
    for (let i = 0; i < data.length; i++) out[i] = toHalf(data[i]!)
    return new Uint8Array(out.buffer)
  }
  return quantizeQ8_0(data)
}
