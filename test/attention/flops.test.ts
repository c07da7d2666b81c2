import { describe, expect, it } from "vitest"
import { attention, flopsPerToken, gpt2, paramCounts, printSpec, replace } from "../../dsl/index.js"

describe("FLOPs per token", () => {
  const dense = gpt2({ vocab: 512, width: 64, context: 128, layers: 2, heads: 4 })
  const perLayerDense = 4 * 128 * 64

  it.each(["none", "headwise", "kv", "layerwise"] as const)("counts Linformer's sequence projections by their work, not per weight (%s)", (sharing) => {
    const k = 16
    const lin = { ...replace(dense, { attention: () => attention("linformer", { heads: 4, k, sharing }) }), allowNonCausal: true }
    // E·K, F·V, QKᵀ and AV against k compressed positions: 2·k·D multiply-adds each, per token and layer.
    expect(flopsPerToken(lin).forward).toBe(flopsPerToken(dense).forward - 2 * perLayerDense + 2 * 8 * k * 64)
  })
})

describe("printed parameter counts", () => {
  it("show a layer-shared Linformer projection once, so the depth row adds up to the total", () => {
    const lin = { ...replace(gpt2({ vocab: 512, width: 64, context: 128, layers: 3, heads: 4 }), { attention: () => attention("linformer", { heads: 4, k: 16, sharing: "layerwise" }) }), allowNonCausal: true }
    const text = printSpec(lin)
    // E is k × context = 16 × 128, declared by all three layers but one tensor.
    expect(text).toMatch(/shared by all blocks\s+2048/)
    const total = paramCounts(lin).total
    const embed = 512 * 64
    const pos = 128 * 64
    const finalNorm = 2 * 64
    const depthRow = Number(/depth ×3\s+([\d.]+)k/.exec(text)![1]) * 1000
    expect(Math.abs(depthRow - (total - embed - pos - finalNorm))).toBeLessThan(500)
  })
})
