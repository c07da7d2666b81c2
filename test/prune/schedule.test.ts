import { describe, expect, it } from "vitest"
import { gradual } from "../../src/experiment/prune/methods/gradual.js"
import { cubicPlan, isUpdateStep, sparsityAt } from "../../src/prune/schedule.js"

describe("Zhu & Gupta's cubic sparsity schedule", () => {
  it("takes the formula's values at t0 + kΔt: 0.8·(1 − (1 − k/4)³) for s_i = 0, s_f = 0.8, n = 4", () => {
    // 40 steps, pruning from step 0 to step 0.8·40 = 32 every 8 steps: n = 4.
    const plan = cubicPlan(gradual.make({ sparsity: 0.8, start: 0, end: 0.8, every: 8 }), 40)
    expect(plan).toEqual({ initial: 0, final: 0.8, t0: 0, every: 8, n: 4 })
    // By hand: (1 − k/4)³ = 1, 27/64, 1/8, 1/64, 0.
    const expected = [0, 0.8 * (37 / 64), 0.8 * (7 / 8), 0.8 * (63 / 64), 0.8]
    expected.forEach((s, k) => expect(sparsityAt(plan, 8 * k)).toBeCloseTo(s, 12))
    expect(expected.map((s) => Number(s.toFixed(4)))).toEqual([0, 0.4625, 0.7, 0.7875, 0.8])
    // The masks hold between updates and after the last.
    expect(sparsityAt(plan, 13)).toBe(sparsityAt(plan, 8))
    expect(sparsityAt(plan, 39)).toBe(0.8)
    expect(Array.from({ length: 41 }, (_, t) => t).filter((t) => isUpdateStep(plan, t))).toEqual([0, 8, 16, 24, 32])
  })

  it("starts from s_i at t0, prunes nothing before it, and reaches s_f at once when the span holds no Δt", () => {
    const plan = cubicPlan(gradual.make({ sparsity: 0.5, initial: 0.1, start: 0.25, end: 0.75, every: 5 }), 40)
    expect(plan).toEqual({ initial: 0.1, final: 0.5, t0: 10, every: 5, n: 4 })
    expect(sparsityAt(plan, 9)).toBe(0)
    expect(sparsityAt(plan, 10)).toBeCloseTo(0.1, 12)
    // k = 2: 0.5 + (0.1 − 0.5)·(1/2)³ = 0.45.
    expect(sparsityAt(plan, 20)).toBeCloseTo(0.45, 12)
    const short = cubicPlan(gradual.make({ sparsity: 0.5, every: 10 }), 2)
    expect(short.n).toBe(0)
    expect(sparsityAt(short, 0)).toBe(0.5)
    expect([0, 1, 2].filter((t) => isUpdateStep(short, t))).toEqual([0])
  })
})
