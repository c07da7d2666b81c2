import { Result } from "effect"
import { describe, expect, it } from "vitest"
import {
  attention, block, blocksOf, decodeSpec, decoder, depth, depthCosts, diffSpecs, earlyExit, ffn, flopsPerToken, hashSpec, interleave, keepBlocks,
  keptParamSource, layerDrop, mapBlocks, mixtureOfDepths, paramCounts, paramTable, printSpec, stack, withPolicy, type BlockSpec, type DecoderSpec, type DepthPolicy,
} from "../../dsl/index.js"
import { mixtureOfDepthsPolicy, routingFlops } from "../../dsl/kinds/depth/mixture-of-depths.js"

/** Depth policies in the language: plain data on a depth or stack node, checked, printed, hashed, diffed. */
const pre = (heads: number, hidden: number): BlockSpec => block({ attention: attention("full", { heads }), ffn: ffn("gelu", { hidden }) })
const dense = pre(4, 128)
const model = (layers: DecoderSpec["layers"]): DecoderSpec => decoder({ vocab: 64, width: 32, context: 16, layers })
const json = (spec: unknown): any => JSON.parse(JSON.stringify(spec))
const errorOf = (input: unknown): string => {
  const r = decodeSpec(input)
  if (Result.isSuccess(r)) throw new Error("expected the spec to be rejected")
  return r.failure.message
}
const policies: Array<[string, DepthPolicy]> = [
  ["layer-drop", layerDrop({ rate: 0.2 })],
  ["early-exit", earlyExit({ threshold: 0.5, measure: "saturation", heads: "per-block" })],
  ["mixture-of-depths", mixtureOfDepths({ capacity: 0.125, every: 2, predictor: 8 })],
]

describe("depth policies in the language", () => {
  it("a model without a policy is the same data as before policies existed", () => {
    expect(json(depth(3, dense))).toEqual({ op: "depth", n: 3, block: json(dense) })
    expect(json(stack([dense, pre(2, 64)]))).toEqual({ op: "stack", blocks: [json(dense), json(pre(2, 64))] })
    expect("policy" in withPolicy(withPolicy(model(depth(3, dense)), layerDrop({ rate: 0.1 })), undefined).layers).toBe(false)
  })

  it.each(policies)("%s decodes from JSON on a depth node and on a stack, and changes the hash", (_name, policy) => {
    for (const layers of [depth(4, dense, policy), stack([dense, pre(2, 64), dense, pre(2, 96)], policy)]) {
      const spec = model(layers)
      const r = decodeSpec(json(spec))
      expect(Result.isSuccess(r) && r.success).toEqual(spec)
      expect(hashSpec(spec)).not.toBe(hashSpec(withPolicy(spec, undefined)))
    }
  })

  it("prints the policy under the layers with its parameters", () => {
    const text = printSpec(model(depth(4, dense, earlyExit({ heads: "per-block" }))))
    // Three exit heads of width × vocab (the last block uses the LM head).
    expect(text).toMatch(/└─ policy early-exit\(softmax>0\.9, head per block\)\s+6144/)
    expect(printSpec(model(interleave(4, [dense, pre(2, 64)], layerDrop({ rate: 0.3 }))))).toMatch(/stack of 4 blocks[\s\S]*└─ policy layer-drop\(p=0\.3\)\s+0/)
  })

  it("diffs a policy field by field, and a change of kind as a whole node", () => {
    const a = model(depth(4, dense, layerDrop({ rate: 0.2 })))
    expect(diffSpecs(a, withPolicy(a, layerDrop({ rate: 0.5 })))).toEqual([{ path: ["layers", "policy", "rate"], before: 0.2, after: 0.5 }])
    const changed = diffSpecs(a, withPolicy(a, earlyExit()))
    expect(changed.map((c) => c.path)).toEqual([["layers", "policy"]])
    expect(diffSpecs(withPolicy(a, undefined), a)).toEqual([{ path: ["layers", "policy"], before: undefined, after: layerDrop({ rate: 0.2 }) }])
  })

  const bad: Array<[string, DecoderSpec, RegExp]> = [
    ["a rate of 1", model(depth(4, dense, layerDrop({ rate: 1 }))), /at \["layers","policy","rate"\]: the probability of skipping a block must be in \[0, 1\), got 1/],
    ["a negative rate", model(depth(4, dense, layerDrop({ rate: -0.1 }))), /at \["layers","policy","rate"\]: .* got -0\.1/],
    ["capacity 0", model(depth(4, dense, mixtureOfDepths({ capacity: 0 }))), /at \["layers","policy","capacity"\]: the fraction of tokens a routed block processes must be in \(0, 1\], got 0/],
    ["capacity above 1", model(depth(4, dense, mixtureOfDepths({ capacity: 1.5 }))), /at \["layers","policy","capacity"\]: .* got 1\.5/],
    ["a softmax threshold above 1", model(depth(4, dense, earlyExit({ threshold: 1.2 }))), /at \["layers","policy","threshold"\]: the softmax measure lies in \[0, 1\], so the threshold must too \(1 never exits\), got 1\.2/],
    ["a negative softmax threshold", model(depth(4, dense, earlyExit({ threshold: -0.5 }))), /at \["layers","policy","threshold"\]: the softmax measure lies in \[0, 1\]/],
    ["a saturation threshold below -1", model(depth(4, dense, earlyExit({ measure: "saturation", threshold: -1.5 }))), /at \["layers","policy","threshold"\]: the saturation measure lies in \[-1, 1\]/],
    ["layer-drop on one block", model(depth(1, dense, layerDrop({ rate: 0.2 }))), /at \["layers","policy"\]: layer-drop needs at least 2 blocks .*; this stack has 1/],
    ["early exit on one block", model(stack([dense], earlyExit())), /at \["layers","policy"\]: early-exit needs at least 2 blocks \(with one block there is nowhere to exit before the end\)/],
    ["routing every 4th of 3 blocks", model(depth(3, dense, mixtureOfDepths({ capacity: 0.5, every: 4 }))), /at \["layers","policy","every"\]: every = 4 routes blocks 3, 7, …: none of these 3/],
  ]
  it.each(bad)("refuses %s with a message naming the field", (_name, spec, message) => {
    expect(errorOf(json(spec))).toMatch(message)
  })

  it("refuses an unknown policy kind and stray fields, with their paths", () => {
    const s = json(model(depth(4, dense, layerDrop({ rate: 0.2 }))))
    expect(errorOf({ ...s, layers: { ...s.layers, policy: { op: "policy", kind: "skip-some" } } })).toMatch(
      /at \["layers","policy","kind"\]: unknown depth policy kind "skip-some"; expected one of layer-drop, early-exit, mixture-of-depths/,
    )
    expect(errorOf({ ...s, layers: { ...s.layers, policy: { ...s.layers.policy, every: 2 } } })).toMatch(/at \["layers","policy","every"\]/)
  })

  it("adds its parameters after all others, named under their blocks, so the decoder's initialise as without it", () => {
    const plain = model(depth(4, dense))
    const exits = paramTable(model(depth(4, dense, earlyExit({ heads: "per-block" }))))
    expect(exits.slice(0, paramTable(plain).length)).toEqual(paramTable(plain))
    expect(exits.slice(paramTable(plain).length).map((p) => [p.name, p.decl.shape])).toEqual([0, 1, 2].map((i) => [`blocks.${i}.exit.weight`, [32, 64]]))
    expect(paramTable(model(depth(4, dense, earlyExit({ heads: "shared" }))))).toEqual(paramTable(plain))
    // Routers and predictors in blocks 1 and 3 (every 2nd); capacity 1 routes nothing.
    const routed = paramTable(model(depth(4, dense, mixtureOfDepths({ capacity: 0.5, predictor: 8 })))).slice(paramTable(plain).length)
    expect(routed.map((p) => p.name)).toEqual(
      [1, 3].flatMap((i) => ["router.weight", "predictor.w1", "predictor.b1", "predictor.w2", "predictor.b2"].map((n) => `blocks.${i}.${n}`)),
    )
    expect(paramCounts(model(depth(4, dense, mixtureOfDepths({ capacity: 0.5, predictor: 8 })))).total).toBe(paramCounts(plain).total + 2 * (32 + 32 * 8 + 8 + 8 + 1))
    expect(paramTable(model(depth(4, dense, mixtureOfDepths({ capacity: 1 }))))).toEqual(paramTable(plain))
  })

  it("counts the nominal FLOPs: at most an exit head per block for the softmax measure, a router per routed block", () => {
    const plain = flopsPerToken(model(depth(4, dense))).forward
    const head = 2 * 32 * 64
    expect(flopsPerToken(model(depth(4, dense, layerDrop({ rate: 0.5 })))).forward).toBe(plain)
    expect(flopsPerToken(model(depth(4, dense, earlyExit({ heads: "per-block" })))).forward).toBe(plain + 3 * head)
    expect(flopsPerToken(model(depth(4, dense, earlyExit({ measure: "saturation" })))).forward).toBe(plain)
    const mod = mixtureOfDepthsPolicy.make({ capacity: 0.25, predictor: 8 })
    expect(flopsPerToken(model(depth(4, dense, mod))).forward).toBe(plain + 2 * (2 * 32 + 2 * (32 * 8 + 8)))
    expect(routingFlops(mod, { vocab: 64, width: 32, context: 16, layers: 4 })).toBe(2 * 32 + 2 * (32 * 8 + 8))
  })

  it("splits the nominal count into blocks, each with the part through its attention", () => {
    const spec = model(stack([pre(4, 128), pre(2, 40), block([attention("full", { heads: 2 }), ffn("relu", { hidden: 24 })])]))
    const costs = depthCosts(spec)
    expect(costs.base + costs.head + costs.blocks.reduce((s, b) => s + b.full, 0)).toBe(flopsPerToken(spec).forward)
    expect(costs.head).toBe(2 * 32 * 64)
    // Attention: 4 projections of 32×32 and 4·T·inner for the scores; the FFN: two matrices of 32×hidden.
    const attn = 2 * 4 * 32 * 32 + 4 * 16 * 32
    // A position that left computes only the K and V projections of full attention (the norm before it counts nothing), bare or in a residual; or those and its scores.
    const keyValues = 2 * 2 * 32 * 32
    const attendedKeyValues = keyValues + 4 * 16 * 32
    expect(costs.blocks).toEqual([
      { full: attn + 2 * 2 * 32 * 128, prefix: attn, prefixLayers: 1, keyValues, attendedKeyValues },
      { full: attn + 2 * 2 * 32 * 40, prefix: attn, prefixLayers: 1, keyValues, attendedKeyValues },
      { full: attn + 2 * 2 * 32 * 24, prefix: attn, prefixLayers: 1, keyValues, attendedKeyValues },
    ])
  })

  it("keepBlocks leaves the policy behind and renames blocks; mapBlocks keeps it", () => {
    const spec = model(stack([dense, pre(2, 64), dense, pre(2, 96)], layerDrop({ rate: 0.2 })))
    const kept = keepBlocks(spec, [1, 3])
    expect(kept.layers).toEqual(stack([pre(2, 64), pre(2, 96)]))
    const source = keptParamSource(spec, [1, 3])
    expect(paramTable(kept).map((p) => source(p.name)).filter((n) => n.startsWith("blocks."))).toEqual(
      paramTable(spec).filter((p) => /^blocks\.[13]\./.test(p.name)).map((p) => p.name),
    )
    expect(source("embed.tokens")).toBe("embed.tokens")
    expect(mapBlocks(spec, [0], () => pre(2, 64)).layers.policy).toEqual(layerDrop({ rate: 0.2 }))
    expect(blocksOf(mapBlocks(spec, [0], () => pre(2, 64)).layers)).toHaveLength(4)
  })
})
