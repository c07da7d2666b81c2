import { Schema } from "effect"
import { describe, expect, it } from "vitest"
import { LrSchedule, constant, cosine, lrAt } from "../../src/schedule/index.js"

describe("lrAt", () => {
  it("constant is the same at every step", () => {
    const s = constant(3e-4)
    expect([1, 50, 1000].map((t) => lrAt(s, t, 1000))).toEqual([3e-4, 3e-4, 3e-4])
  })

  it("cosine warms up linearly, then decays to the floor (hand-computed points)", () => {
    // peak 1, warmup 10, floor 0.1, 110 steps: the decay phase is 100 steps long.
    const s = cosine({ peak: 1, warmup: 10, floor: 0.1 })
    expect(lrAt(s, 0, 110)).toBe(0)
    expect(lrAt(s, 1, 110)).toBeCloseTo(0.1, 12)
    expect(lrAt(s, 5, 110)).toBeCloseTo(0.5, 12)
    expect(lrAt(s, 10, 110)).toBeCloseTo(1, 12)
    // Half way: 0.1 + 0.9·0.5·(1 + cos(π/2)) = 0.55
    expect(lrAt(s, 60, 110)).toBeCloseTo(0.55, 12)
    // A quarter: 0.1 + 0.45·(1 + cos(π/4)) = 0.1 + 0.45·1.7071067811865475
    expect(lrAt(s, 35, 110)).toBeCloseTo(0.868198051533946, 12)
    expect(lrAt(s, 110, 110)).toBeCloseTo(0.1, 12)
    expect(lrAt(s, 500, 110)).toBe(0.1)
  })

  it("cosine without warmup starts at the peak", () => {
    expect(lrAt(cosine({ peak: 2, warmup: 0, floor: 0 }), 0, 10)).toBe(2)
  })

  it("rejects invalid schedules and arguments with clear messages", () => {
    expect(() => constant(0)).toThrow(/lr/)
    expect(() => cosine({ peak: 1, warmup: 1.5, floor: 0 })).toThrow(/warmup/)
    expect(() => cosine({ peak: 1, warmup: 1, floor: 2 })).toThrow(/floor 2 exceeds peak 1/)
    expect(() => lrAt(constant(1), -1, 10)).toThrow(/step must be an integer >= 0/)
    expect(() => lrAt(constant(1), 1, 0)).toThrow(/totalSteps/)
  })

  it("round-trips as plain JSON data through its schema", () => {
    const s = cosine({ peak: 6e-4, warmup: 100, floor: 6e-5 })
    const json = JSON.parse(JSON.stringify(Schema.encodeSync(LrSchedule)(s)))
    expect(json).toEqual({ _tag: "cosine", peak: 6e-4, warmup: 100, floor: 6e-5 })
    expect(Schema.decodeUnknownSync(LrSchedule)(json)).toEqual(s)
    expect(() => Schema.decodeUnknownSync(LrSchedule)({ _tag: "linear", lr: 1 })).toThrow()
  })
})
