import { describe, expect, it } from "vitest"
import { flopRatio, spread, thresholdFor } from "../../bench/stats.js"

describe("the generation benchmark's figures", () => {
  it("spread: median and range of the rounds", () => {
    expect(spread([3, 1, 2])).toEqual({ median: 2, min: 1, max: 3 })
    expect(spread([4, 1, 2, 10])).toEqual({ median: 3, min: 1, max: 10 })
  })

  it("F is plain FLOPs over the policy's, above 1 when the policy spends less", () => {
    expect(flopRatio(4.24e6, 2.93e6)).toBe(1.447)
    expect(flopRatio(4.24e6, 9.67e6)).toBe(0.438)
  })

  it("the calibrated threshold is where blocks per position first reach the target", () => {
    // Blocks per position as a step function of the threshold: 1 below 0.3, 2.4 up to 0.7, 6 above.
    const blocks = (t: number) => (t < 0.3 ? 1 : t <= 0.7 ? 2.4 : 6)
    const t = thresholdFor(blocks, 2.4, 0, 1)
    expect(t).toBeGreaterThanOrEqual(0.3)
    expect(t).toBeLessThan(0.3 + 1e-6)
    expect(blocks(t)).toBe(2.4)
    expect(blocks(thresholdFor(blocks, 5, 0, 1))).toBe(6)
  })
})
