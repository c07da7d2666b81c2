import { inflateSync } from "node:zlib"
import * as tf from "@tensorflow/tfjs"
import { beforeAll, describe, expect, it } from "vitest"
import { attention } from "../../dsl/index.js"
import { attentionModule, type AttentionKindTag } from "../../dsl/kinds/attention/index.js"
import { attends, measurePattern } from "../../src/attention/pattern.js"
import { crc32, encodePng } from "../../src/report/png.js"
import { representative, uneven } from "./examples.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const t = 20
const expected = (see: (i: number, j: number) => boolean) => Array.from({ length: t }, (_, i) => Array.from({ length: t }, (_, j) => see(i, j)))

describe("the measured pattern is the computed one", () => {
  it("strided, merged: the previous l positions and every l-th", () => {
    const spec = attention("sparse-strided", { heads: 2, stride: 4 })
    expect(attends(measurePattern(spec, { context: t, layer: 0, head: 0 }), t)).toEqual(expected((i, j) => j <= i && (i - j <= 4 || (i - j) % 4 === 0)))
  })
  it("fixed, split: the second half of the heads sees only the summary columns", () => {
    const spec = attention("sparse-fixed", { heads: 2, stride: 5, summary: 2, combine: "split" })
    // A query with any key also depends on its own position, through q_i; one with none outputs zero.
    expect(attends(measurePattern(spec, { context: t, layer: 0, head: 1 }), t)).toEqual(expected((i, j) => j <= i && (j % 5 >= 3 || (i === j && i >= 3))))
  })
  it("longformer: dilated window of the head, global columns and rows", () => {
    const spec = attention("longformer", { heads: 2, window: 3, dilation: [1, 2], global: [0, 9] })
    const see = (i: number, j: number) => j <= i && (i === 9 || j === 0 || j === 9 || (i - j <= 6 && (i - j) % 2 === 0))
    expect(attends(measurePattern(spec, { context: t, layer: 0, head: 1 }), t)).toEqual(expected(see))
  })
  it("linformer looks ahead; its causal variant sees exactly the past", () => {
    const published = attends(measurePattern(attention("linformer", { heads: 2, k: 4 }), { context: t, layer: 0, head: 0 }), t)
    expect(published).toEqual(expected(() => true))
    const causal = attends(measurePattern(attention("linformer-causal", { heads: 2, k: 4, block: 6 }), { context: t, layer: 0, head: 0 }), t)
    expect(causal).toEqual(expected((i, j) => j <= i))
  })
})

describe("each kind's described pattern is what it computes", () => {
  // The description says which keys a query may see; the computation makes a query that sees
  // any key also depend on its own position (through q_i).
  const cases = (Object.keys(representative) as AttentionKindTag[]).flatMap((kind) =>
    [representative[kind], uneven[kind]].flatMap((spec) => [0, 1].flatMap((layer) => [0, spec.heads - 1].map((head) => ({ kind, spec, layer, head, label: attentionModule(spec).label(spec) })))),
  )
  it.each(cases)("$label, layer $layer, head $head", ({ spec, layer, head }) => {
    const visible = attentionModule(spec).visible(spec, layer)
    const sees = (i: number) => Array.from({ length: t }, (_, j) => visible(head, i, j))
    const want = expected((i, j) => sees(i)[j]! || (i === j && sees(i).some(Boolean)))
    expect(attends(measurePattern(spec, { context: t, layer, head }), t)).toEqual(want)
  })
})

describe("png", () => {
  it("writes signature, checksummed chunks and the filtered rows", () => {
    expect(crc32(new TextEncoder().encode("IEND"))).toBe(0xae426082)
    const rgb = Uint8Array.from([255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30])
    const png = encodePng(2, 2, rgb)
    expect([...png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])
    expect(png.readUInt32BE(16)).toBe(2)
    const idatLength = png.readUInt32BE(33)
    const raw = inflateSync(png.subarray(41, 41 + idatLength))
    expect([...raw]).toEqual([0, ...rgb.subarray(0, 6), 0, ...rgb.subarray(6)])
  })
})
