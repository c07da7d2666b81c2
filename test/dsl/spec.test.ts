import { Result } from "effect"
import { describe, expect, it } from "vitest"
import {
  activation, attention, block, decodeSpec, decoder, depth, diffSpecs, ffn, formatDiff, hashSpec, norm, override,
  posenc, printSpec, replace, residual, sweep, type DecoderSpec, type DepthSpec,
} from "../../dsl/index.js"

const base = decoder({
  vocab: 4096,
  width: 256,
  context: 256,
  posenc: posenc("learned"),
  layers: depth(4, block({ attention: attention("full", { heads: 4 }), ffn: ffn("relu", { mult: 4 }), norm: norm("layer") })),
})

const json = (): any => JSON.parse(JSON.stringify(base))

const errorOf = (input: unknown): string => {
  const r = decodeSpec(input)
  if (Result.isSuccess(r)) throw new Error("expected the spec to be rejected")
  return r.failure.message
}

describe("spec decoding", () => {
  it("round-trips a spec through JSON", () => {
    const r = decodeSpec(json())
    expect(Result.isSuccess(r) && r.success).toEqual(base)
  })

  const malformed: Array<[string, (s: any) => void, RegExp]> = [
    ["heads not dividing width", (s) => (s.layers.block.layers[0].body[1].heads = 6), /at \["layers","block","layers",0,"body",1,"heads"\]: 6 does not divide width 256/],
    ["wrong type", (s) => (s.width = "256"), /at \["width"\]: Expected number/],
    ["negative size", (s) => (s.context = -4), /at \["context"\]: Expected a value greater than 0/],
    ["vocab below 2", (s) => (s.vocab = 1), /at \["vocab"\]: Expected a value greater than or equal to 2/],
    ["fractional layer count", (s) => (s.layers.n = 2.5), /at \["layers","n"\]: Expected an integer/],
    ["unknown attention kind", (s) => (s.layers.block.layers[0].body[1].kind = "sparse-magic"), /at \["layers","block","layers",0,"body",1,"kind"\]: unknown attention kind "sparse-magic"; expected one of full/],
    ["unknown activation", (s) => (s.layers.block.layers[1].body[1].activation = { kind: "swoosh" }), /at \["layers","block","layers",1,"body",1,"activation","kind"\]: unknown activation kind "swoosh"/],
    ["unknown op", (s) => (s.layers.block.layers[1] = { op: "conv" }), /at \["layers","block","layers",1,"op"\]: unknown layer op "conv"/],
    ["missing field", (s) => delete s.layers.block.layers[0].body[1].heads, /at \["layers","block","layers",0,"body",1,"heads"\]: Missing key/],
    ["misspelled field", (s) => (s.layers.block.layers[0].body[1].haeds = 4), /at \["layers","block","layers",0,"body",1,"haeds"\]: Expected no excess property/],
    ["dropout out of range", (s) => (s.dropout = 1.5), /at \["dropout"\]: Expected a value less than 1/],
    ["empty block", (s) => (s.layers.block.layers = []), /at \["layers","block","layers"\]: expected at least one layer/],
    ["not an object", (s) => (s.posenc = 3), /at \["posenc"\]: expected a posenc object, got 3/],
  ]

  it.each(malformed)("rejects %s with a message naming the field", (_name, mutate, expected) => {
    const s = json()
    mutate(s)
    expect(errorOf(s)).toMatch(expected)
  })

  it("reports every problem at once", () => {
    const s = json()
    s.width = -1
    s.layers.block.layers[1].body[1].activation = { kind: "swoosh" }
    const message = errorOf(s)
    expect(message).toMatch(/\["width"\]/)
    expect(message).toMatch(/"activation","kind"\]/)
  })

  it("rejects non-objects without throwing", () => {
    for (const input of [null, 42, "decoder", [], undefined]) expect(() => decodeSpec(input)).not.toThrow()
    expect(errorOf(null)).toMatch(/Expected/)
  })
})

describe("spec identity and variation", () => {
  it("hashes stably, independent of field order", () => {
    const reverseKeys = (u: unknown): unknown =>
      Array.isArray(u) ? u.map(reverseKeys) : typeof u === "object" && u !== null ? Object.fromEntries(Object.entries(u).reverse().map(([k, v]) => [k, reverseKeys(v)])) : u
    const reversed = reverseKeys(json())
    expect(JSON.stringify(reversed)).not.toBe(JSON.stringify(base))
    expect(hashSpec(reversed)).toBe(hashSpec(base))
    expect(hashSpec(override(base, { width: 512 }))).not.toBe(hashSpec(base))
  })

  it("diffs two variants down to the changed fields", () => {
    const wide = override(base, { width: 512, layers: { n: 6 } })
    const changes = diffSpecs(base, wide)
    expect(changes.map((c) => c.path.join("."))).toEqual(["layers.n", "width"])
    expect(formatDiff(changes)).toBe("layers.n: 4 → 6\nwidth: 256 → 512")
    expect(diffSpecs(base, base)).toEqual([])
  })

  it("reports a changed kind as a whole node", () => {
    const gelu = replace(base, { activation: () => activation("gelu") })
    const changes = diffSpecs(base, gelu)
    expect(changes).toHaveLength(1)
    expect(changes[0]!.path).toEqual(["layers", "block", "layers", 1, "body", 1, "activation"])
    expect(changes[0]!.after).toEqual({ kind: "gelu" })
  })

  it("override leaves the base untouched and replaces nodes whose kind changes", () => {
    const none = override(base, { posenc: posenc("none") })
    expect(none.posenc).toEqual({ op: "posenc", kind: "none" })
    expect(base.posenc.kind).toBe("learned")
    expect(Object.isFrozen((base.layers as DepthSpec).block)).toBe(true)
  })

  it("sweeps the cross product into named variants", () => {
    const variants = sweep(base, { posenc: [posenc("learned"), posenc("none")], activation: [activation("relu"), activation("gelu")] })
    expect(Object.keys(variants)).toEqual(["learned_relu", "learned_gelu", "none_relu", "none_gelu"])
    const v = variants["none_gelu"] as DecoderSpec
    expect(v.posenc.kind).toBe("none")
    const ffnNode = ((v.layers as DepthSpec).block.layers[1] as any).body[1]
    expect(ffnNode.activation.kind).toBe("gelu")
    expect(Object.keys(sweep(base, { width: [128, 256] }))).toEqual(["width128", "width256"])
  })

  it("prints a tree with per-node parameter counts", () => {
    const text = printSpec(base)
    expect(text).toMatch(/attention full\(h=4\)\s+263k/)
    expect(text).toMatch(/ffn relu 256→1024→256\s+526k/)
    expect(text).toMatch(/embed 4096×256\s+1\.05M/)
    expect(text.split("\n")[0]).toMatch(/^decoder vocab=4096 width=256 context=256\s+4\.27M$/)
  })

  it("expresses a post-norm block explicitly", () => {
    const post = decoder({
      vocab: 10, width: 8, context: 4,
      layers: depth(1, block([residual([attention("full", { heads: 2 })]), norm("layer"), residual([ffn("gelu")]), norm("layer")])),
    })
    expect(Result.isSuccess(decodeSpec(JSON.parse(JSON.stringify(post))))).toBe(true)
  })
})

describe("QK-norm and the logit soft-cap", () => {
  const qk = replace(base, { attention: (a) => attention("full", { heads: a.heads, qkNorm: true }) })
  const capped: DecoderSpec = { ...qk, softcap: 30 }

  it("round-trip, print, hash and diff as options of their nodes", () => {
    const r = decodeSpec(JSON.parse(JSON.stringify(capped)))
    expect(Result.isSuccess(r) && r.success).toEqual(capped)
    const text = printSpec(capped)
    expect(text.split("\n")[0]).toMatch(/^decoder vocab=4096 width=256 context=256 softcap=30\s/)
    expect(text).toMatch(/attention full\(h=4,qk-norm\)\s+263k/)
    expect(formatDiff(diffSpecs(base, capped))).toBe('layers.block.layers[0].body[1].qkNorm: (absent) → true\nsoftcap: (absent) → 30')
    expect(new Set([base, qk, capped].map(hashSpec)).size).toBe(3)
  })

  it("are absent when off, so the specs (and hashes) of models without them are unchanged", () => {
    expect(attention("full", { heads: 4, qkNorm: false })).toEqual(attention("full", { heads: 4 }))
    expect("qkNorm" in attention("sliding-window", { heads: 4, window: 8 })).toBe(false)
    expect("softcap" in base).toBe(false)
  })

  const malformed: Array<[string, (s: any) => void, RegExp]> = [
    ["a soft-cap of 0", (s) => (s.softcap = 0), /at \["softcap"\]: Expected a value greater than 0/],
    ["a negative soft-cap", (s) => (s.softcap = -30), /at \["softcap"\]: Expected a value greater than 0/],
    ["an infinite soft-cap", (s) => (s.softcap = Infinity), /at \["softcap"\]: Expected a finite number/],
    ["a soft-cap as text", (s) => (s.softcap = "30"), /at \["softcap"\]: Expected number/],
    ["qkNorm not a boolean", (s) => (s.layers.block.layers[0].body[1].qkNorm = "yes"), /at \["layers","block","layers",0,"body",1,"qkNorm"\]: Expected boolean/],
  ]
  it.each(malformed)("rejects %s with a message naming the field", (_name, mutate, expected) => {
    const s = json()
    mutate(s)
    expect(errorOf(s)).toMatch(expected)
  })
})
