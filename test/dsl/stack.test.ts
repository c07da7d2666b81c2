import { Result } from "effect"
import { describe, expect, it } from "vitest"
import {
  attention, block, blocksOf, decodeSpec, decoder, depth, diffSpecs, ffn, flopsPerToken, hashSpec, interleave, keepBlocks, layersOf, mapBlocks,
  override, paramCounts, paramTable, posenc, printSpec, replace, replaceIn, stack, sweep, type BlockSpec, type DecoderSpec, type StackSpec,
} from "../../dsl/index.js"
import { shapeConflicts } from "../../dsl/params.js"
import { mixedStack } from "./fixtures/mixed-stack.js"

const pre = (attn: ReturnType<typeof attention>, f = ffn("gelu")): BlockSpec => block({ attention: attn, ffn: f })
const dense = pre(attention("full", { heads: 4 }))
const windowed = (w: number) => pre(attention("sliding-window", { heads: 4, window: w }))
const model = (layers: DecoderSpec["layers"]): DecoderSpec => decoder({ vocab: 64, width: 32, context: 64, layers })
const json = (spec: DecoderSpec): any => JSON.parse(JSON.stringify(spec))
const errorOf = (input: unknown): string => {
  const r = decodeSpec(input)
  if (Result.isSuccess(r)) throw new Error("expected the spec to be rejected")
  return r.failure.message
}

describe("stacks of different blocks", () => {
  it("depth(n, b) is the short form of n equal blocks: same parameters, names and counts", () => {
    const short = model(depth(3, dense))
    const long = model(stack([dense, dense, dense]))
    expect(paramTable(long)).toEqual(paramTable(short))
    expect(paramCounts(long)).toEqual(paramCounts(short))
    expect(flopsPerToken(long)).toEqual(flopsPerToken(short))
    expect(blocksOf(short.layers)).toEqual(blocksOf(long.layers))
    // Different spellings of one model are different specs.
    expect(hashSpec(long)).not.toBe(hashSpec(short))
  })

  it("counts parameters and FLOPs of a heterogeneous stack as written out by hand", () => {
    // Blocks L, L, L, G, L, L at width 16. L: sliding window, 2 heads of 12 (inner 24), GELU
    // FFN of exact width 40, two RMS gains. G: dense, 3 heads of 8 (inner 24), SwiGLU at
    // mult 2 (2/3 of 32 rounded up to 8: 24), two RMS gains.
    const attn = 3 * 16 * 24 + 24 * 16 + 3 * 24 + 16
    const local = attn + (16 * 40 + 40 * 16 + 40 + 16) + 2 * 16
    const global = attn + (3 * 16 * 24 + 2 * 24 + 16) + 2 * 16
    const total = 50 * 16 + 5 * local + global + 2 * 16
    expect(paramCounts(mixedStack)).toEqual({ total, embedding: 50 * 16, nonEmbedding: total - 50 * 16 })
    // 2 FLOPs per matmul weight (tied head included), plus 4·keys·inner for the scores and
    // weighted values: the window's two blocks of w = 8 keys, or the whole context of 32.
    const matmuls = 5 * (4 * 16 * 24 + 2 * 16 * 40) + (4 * 16 * 24 + 3 * 16 * 24) + 50 * 16
    expect(flopsPerToken(mixedStack).forward).toBe(2 * matmuls + 5 * (4 * 16 * 24) + 4 * 32 * 24)
  })

  it("names parameters by block position and gives each block its own shapes", () => {
    const table = new Map(paramTable(mixedStack).map((p) => [p.name, p.decl.shape]))
    expect(table.get("blocks.0.0.attention.wq")).toEqual([16, 24])
    expect(table.get("blocks.3.0.attention.wo")).toEqual([24, 16])
    expect(table.get("blocks.3.1.ffn.w_gate")).toEqual([16, 24])
    expect(table.get("blocks.5.1.ffn.w_in")).toEqual([16, 40])
    expect(table.has("blocks.5.1.ffn.w_gate")).toBe(false)
    expect(table.has("blocks.6.0.norm.gain")).toBe(false)
  })

  it("prints runs of equal blocks once with ×n and differing blocks each", () => {
    const text = printSpec(mixedStack)
    const lines = text.split("\n")
    expect(lines.filter((l) => /blocks? \d/.test(l)).map((l) => l.replace(/^[│├└─ ]+/, "").replace(/\s+\S+$/, ""))).toEqual([
      "blocks 0–2 ×3 (2992 each)",
      "block 3",
      "blocks 4–5 ×2 (2992 each)",
    ])
    expect(text).toMatch(/stack of 6 blocks\s+17\.8k/)
    expect(text).toMatch(/attention sliding-window\(h=2×12,w=8\)\s+1624/)
    expect(text).toMatch(/attention full\(h=3×8\)\s+1624/)
    expect(text).toMatch(/ffn gelu 16→40→16\s+1336/)
    expect(text).toMatch(/ffn swiglu 16→24→16\s+1216/)
  })

  it("decodes from JSON and names the path of every problem inside a stack", () => {
    const r = decodeSpec(json(mixedStack))
    expect(Result.isSuccess(r) && r.success).toEqual(mixedStack)
    const s = json(model(stack([dense, dense, windowed(8)])))
    s.layers.blocks[2].layers[0].body[1].heads = 5
    s.layers.blocks[1].layers[1].body[1].activation = { kind: "swoosh" }
    const message = errorOf(s)
    expect(message).toMatch(/at \["layers","blocks",1,"layers",1,"body",1,"activation","kind"\]: unknown activation kind "swoosh"/)
    expect(errorOf({ ...json(mixedStack), layers: { op: "stack", blocks: [] } })).toMatch(/at \["layers","blocks"\]: expected at least one block/)
    expect(errorOf({ ...json(mixedStack), layers: { op: "tower", blocks: [] } })).toMatch(/at \["layers","op"\]: unknown layers op "tower"; expected one of depth, stack/)
    const uneven = json(model(stack([dense, windowed(8)])))
    uneven.layers.blocks[1].layers[0].body[1].heads = 5
    expect(errorOf(uneven)).toMatch(/at \["layers","blocks",1,"layers",0,"body",1,"heads"\]: 5 does not divide width 32; set headDim/)
  })

  it("takes explicit head sizes and FFN widths, with today's defaults when omitted", () => {
    const explicit = model(depth(1, pre(attention("full", { heads: 5, headDim: 7 }), ffn("relu", { hidden: 50 }))))
    expect(Result.isSuccess(decodeSpec(json(explicit)))).toBe(true)
    const table = new Map(paramTable(explicit).map((p) => [p.name, p.decl.shape]))
    expect(table.get("blocks.0.0.attention.wk")).toEqual([32, 35])
    expect(table.get("blocks.0.1.ffn.w_out")).toEqual([50, 32])
    // A spec written before explicit sizes (mult, no headDim) decodes to itself.
    const old = json(model(depth(2, dense)))
    expect(old.layers.block.layers[1].body[1]).toEqual({ op: "ffn", activation: { kind: "gelu" }, mult: 4, bias: true, dropout: 0 })
    expect(Result.isSuccess(decodeSpec(old)) && hashSpec(decodeSpec(old).pipe(Result.getOrThrow))).toBe(hashSpec(old))
    const both = json(explicit)
    both.layers.block.layers[1].body[1].mult = 4
    expect(errorOf(both)).toMatch(/at \["layers","block","layers",1,"body",1\]: give the hidden width either as mult .* or as hidden .*, not both or neither/)
  })

  it("checks position schemes against each layer's heads: rotary head sizes, T5's table", () => {
    const rope = (layers: DecoderSpec["layers"]) => decoder({ vocab: 64, width: 32, context: 64, posenc: posenc("rope"), layers })
    expect(errorOf(json(rope(stack([dense, pre(attention("full", { heads: 3, headDim: 5 }))]))))).toMatch(
      /at \["posenc"\]: head dim 5 is odd; rotary pairs need an even one \(attention at \["layers","blocks",1,"layers",0,"body",1\]\)/,
    )
    const t5 = (heads: number) => decoder({ vocab: 64, width: 32, context: 64, posenc: posenc("t5", { heads }), layers: stack([dense, pre(attention("full", { heads: 2 }))]) })
    expect(Result.isSuccess(decodeSpec(json(t5(4))))).toBe(true)
    expect(errorOf(json(t5(2)))).toMatch(/at \["posenc","heads"\]: the bias table has 2 heads, fewer than the 4 of the attention layer \(attention at \["layers","blocks",0/)
  })

  it("refuses one parameter name with two shapes", () => {
    const declared = [
      { name: "shared.e", shape: [4, 64], path: ["layers", "blocks", 0] },
      { name: "shared.e", shape: [4, 64], path: ["layers", "blocks", 1] },
      { name: "shared.e", shape: [8, 64], path: ["layers", "blocks", 2] },
    ]
    expect(shapeConflicts(declared)).toEqual([
      { path: ["layers", "blocks", 2], message: 'parameter "shared.e" has shape [8,64] here but [4,64] at ["layers","blocks",0]: one name, one shape' },
    ])
    expect(shapeConflicts(declared.slice(0, 2))).toEqual([])
  })
})

describe("making heterogeneous variants", () => {
  it("interleave repeats a pattern over n blocks", () => {
    const layers = interleave(6, [windowed(8), windowed(8), dense]) as StackSpec
    expect(layers.blocks.map((b) => (b.layers[0] as any).body[1].kind)).toEqual(["sliding-window", "sliding-window", "full", "sliding-window", "sliding-window", "full"])
  })

  it("replace within chosen blocks: every 4th block keeps dense attention, the rest slide", () => {
    const base = model(depth(8, dense))
    const mixed = replace(base, { attention: () => attention("sliding-window", { heads: 4, window: 16 }) }, { blocks: (i) => i % 4 !== 3 })
    expect(blocksOf(mixed.layers).map((b) => (b.layers[0] as any).body[1].kind)).toEqual([
      "sliding-window", "sliding-window", "sliding-window", "full", "sliding-window", "sliding-window", "sliding-window", "full",
    ])
    expect(mixed.posenc).toEqual(base.posenc)
    expect(Result.isSuccess(decodeSpec(json(mixed)))).toBe(true)
    expect(diffSpecs(model(depth(8, dense)), mixed)[0]!.path).toEqual(["layers"])
    const bigger = replace(mixed, { ffn: () => ffn("gelu", { hidden: 200 }) }, { blocks: [3] })
    expect(diffSpecs(mixed, bigger).map((c) => c.path.join("."))).toEqual(["layers.blocks.3.layers.1.body.1.hidden", "layers.blocks.3.layers.1.body.1.mult"])
  })

  it("widens windows with depth by mapping each block", () => {
    const widening = mapBlocks(model(depth(4, dense)), () => true, (b, i) => replaceIn(b, { attention: () => attention("sliding-window", { heads: 4, window: 8 << i }) }))
    expect(blocksOf(widening.layers).map((b) => (b.layers[0] as any).body[1].window)).toEqual([8, 16, 32, 64])
    expect(printSpec(widening)).toMatch(/block 3\s/)
  })

  it("keeps chosen blocks, and spells equal blocks as depth", () => {
    const base = model(stack([dense, windowed(8), dense, windowed(8)]))
    const even = keepBlocks(base, (i) => i % 2 === 0)
    expect(even.layers).toEqual(depth(2, dense))
    expect(keepBlocks(base, [1, 2]).layers).toEqual(stack([windowed(8), dense]))
    expect(() => keepBlocks(base, [4])).toThrow(/block indices 4 are not among the 4 blocks \(0–3\)/)
    expect(layersOf([dense, dense])).toEqual(depth(2, dense))
  })

  it("override, sweep and diff reach into stacks", () => {
    const base = model(stack([dense, windowed(8)]))
    expect(override(base, { width: 64 }).width).toBe(64)
    expect(() => sweep(base, { depth: [2, 4] })).toThrow(/depth axis repeats the block of depth\(n, block\); this model is a stack/)
    const variants = sweep(base, { posenc: [posenc("rope"), posenc("alibi")] })
    expect(Object.keys(variants)).toEqual(["rope", "alibi"])
    expect((variants["rope"]!.layers as StackSpec).blocks).toEqual([dense, windowed(8)])
    const changed = model(stack([dense, windowed(16)]))
    expect(diffSpecs(base, changed)).toEqual([{ path: ["layers", "blocks", 1, "layers", 0, "body", 1, "window"], before: 8, after: 16 }])
  })
})
