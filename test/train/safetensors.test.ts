import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { decodeSafetensors, encodeSafetensors } from "../../src/train/safetensors.js"

/** A minimal independent reader: header via DataView + JSON.parse, values via DataView getters. */
const readIndependently = (bytes: Uint8Array) => {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const n = Number(view.getBigUint64(0, true))
  const header = JSON.parse(Buffer.from(bytes.subarray(8, 8 + n)).toString("utf8"))
  const values: Record<string, number[]> = {}
  for (const [name, e] of Object.entries<any>(header)) {
    if (name === "__metadata__") continue
    const out: number[] = []
    for (let at = 8 + n + e.data_offsets[0]; at < 8 + n + e.data_offsets[1]; at += 4) {
      out.push(e.dtype === "F32" ? view.getFloat32(at, true) : view.getInt32(at, true))
    }
    values[name] = out
  }
  return { headerLength: n, header, values }
}

const encode = (...args: Parameters<typeof encodeSafetensors>) => Effect.runSync(encodeSafetensors(...args))
const decodeError = (bytes: Uint8Array) => Effect.runSync(Effect.flip(decodeSafetensors(bytes, "f.safetensors"))).message

/** Builds a file from a raw header object and data bytes, padding like the spec. */
const rawFile = (header: unknown, data: number[]): Uint8Array => {
  let json = JSON.stringify(header)
  while (json.length % 8 !== 0) json += " "
  const out = new Uint8Array(8 + json.length + data.length)
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true)
  out.set(Buffer.from(json), 8)
  out.set(data, 8 + json.length)
  return out
}

describe("safetensors", () => {
  it("writes the documented layout byte for byte", () => {
    const bytes = encode({ a: { shape: [2], data: new Float32Array([1, 2]) } })
    const json = '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
    expect(json.length).toBe(54)
    const expected = [56, 0, 0, 0, 0, 0, 0, 0, ...Buffer.from(json + "  "), 0, 0, 0x80, 0x3f, 0, 0, 0, 0x40]
    expect([...bytes]).toEqual(expected)
  })

  it("is read correctly by an independent reader, tensors in sorted-name order", () => {
    const tensors = {
      "blocks.1.w": { shape: [2, 3], data: new Float32Array([0.5, -1, 3.25, 1e-8, -0, 7]) },
      "blocks.0.w": { shape: [3], data: new Float32Array([1, 2, 3]) },
      ids: { shape: [2, 2], data: new Int32Array([-1, 2, 2 ** 31 - 1, -(2 ** 31)]) },
      empty: { shape: [0, 4], data: new Float32Array([]) },
    }
    const bytes = encode(tensors, { format: "pt" })
    const r = readIndependently(bytes)
    expect((8 + r.headerLength) % 8).toBe(0)
    expect(r.header.__metadata__).toEqual({ format: "pt" })
    expect(r.header["blocks.0.w"]).toEqual({ dtype: "F32", shape: [3], data_offsets: [0, 12] })
    expect(r.header["blocks.1.w"]).toEqual({ dtype: "F32", shape: [2, 3], data_offsets: [12, 36] })
    expect(r.header.empty).toEqual({ dtype: "F32", shape: [0, 4], data_offsets: [36, 36] })
    expect(r.header.ids).toEqual({ dtype: "I32", shape: [2, 2], data_offsets: [36, 52] })
    expect(bytes.length).toBe(8 + r.headerLength + 52)
    expect(r.values["blocks.1.w"]).toEqual([0.5, -1, 3.25, Math.fround(1e-8), -0, 7])
    expect(r.values.ids).toEqual([-1, 2, 2 ** 31 - 1, -(2 ** 31)])

    const back = Effect.runSync(decodeSafetensors(bytes, "x"))
    expect(back.metadata).toEqual({ format: "pt" })
    expect(back.tensors.ids).toEqual({ dtype: "I32", shape: [2, 2], data: tensors.ids.data })
    expect(back.tensors["blocks.1.w"].data).toEqual(tensors["blocks.1.w"].data)
    expect(back.tensors.empty.shape).toEqual([0, 4])
  })

  it("decodes F16 and BF16 at unaligned offsets into float32", () => {
    const header = {
      h: { dtype: "F16", shape: [3], data_offsets: [0, 6] },
      b: { dtype: "BF16", shape: [2], data_offsets: [6, 10] },
    }
    // F16: 1.0 = 0x3c00, -2.0 = 0xc000, smallest subnormal 0x0001; BF16: 1.0 = 0x3f80, 3.140625 = 0x4049
    const file = rawFile(header, [0x00, 0x3c, 0x00, 0xc0, 0x01, 0x00, 0x80, 0x3f, 0x49, 0x40])
    const { tensors } = Effect.runSync(decodeSafetensors(file, "x"))
    expect([...tensors.h.data]).toEqual([1, -2, Math.fround(2 ** -24)])
    expect(tensors.h.dtype).toBe("F16")
    expect([...tensors.b.data]).toEqual([1, 3.140625])
  })

  it("rejects malformed files naming the file and tensor", () => {
    expect(decodeError(new Uint8Array(3))).toMatch(/^f\.safetensors: .*too short/)
    const huge = new Uint8Array(16)
    new DataView(huge.buffer).setBigUint64(0, 1000n, true)
    expect(decodeError(huge)).toMatch(/header length 1000 exceeds the 8 bytes/)
    const ok = { dtype: "F32", shape: [1], data_offsets: [0, 4] }
    expect(decodeError(rawFile({ a: { ...ok, dtype: "F64", data_offsets: [0, 8] } }, Array(8).fill(0)))).toMatch(
      /tensor "a": unsupported dtype "F64"/,
    )
    expect(decodeError(rawFile({ a: { ...ok, shape: [2] } }, [0, 0, 0, 0]))).toMatch(/tensor "a": .*span 4 bytes but F32\[2\] needs 8/)
    expect(decodeError(rawFile({ a: { ...ok, data_offsets: [4, 8] } }, Array(8).fill(0)))).toMatch(/tensor "a": .*gap after byte 0/)
    expect(decodeError(rawFile({ a: ok, b: ok }, [0, 0, 0, 0]))).toMatch(/tensor "b": .*overlap/)
    expect(decodeError(rawFile({ a: ok }, Array(8).fill(0)))).toMatch(/cover 4 data bytes but the file holds 8/)
    expect(decodeError(rawFile({ a: { ...ok, data_offsets: [0, 8], shape: [2] } }, [0, 0, 0, 0]))).toMatch(/tensor "a": .*run past/)
    expect(decodeError(rawFile({ a: { ...ok, shape: [-1] } }, []))).toMatch(/tensor "a": shape \[-1\]/)
    expect(decodeError(rawFile({ __metadata__: { k: 1 } }, []))).toMatch(/__metadata__\.k is not a string/)
    expect(decodeError(rawFile([1], []))).toMatch(/not a JSON object/)
    const broken = rawFile({}, [])
    broken[8] = 0x7b + 1
    expect(decodeError(broken)).toMatch(/not valid UTF-8 JSON/)
  })

  it("rejects tensors whose shape does not match their data when encoding", () => {
    const e = Effect.runSync(Effect.flip(encodeSafetensors({ w: { shape: [2, 2], data: new Float32Array(3) } }, {}, "m.safetensors")))
    expect(e.message).toBe('m.safetensors: tensor "w": shape [2, 2] needs 4 elements, data has 3')
  })
})
