import { describe, expect, it } from "vitest"
import { attention, flopsPerToken, gpt2, replace } from "../../dsl/index.js"

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
