import { Schema } from "effect"
import { describe, expect, it } from "vitest"
import { LrSchedule, constant, cosine, linear, lrAt, wsd } from "../../src/schedule/index.js"

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

  it("linear warms up, then decays in a straight line to the floor (hand-computed points)", () => {
    // peak 1, warmup 10, floor 0.1, 110 steps: from 1 at step 10 down 0.009 per step.
    const s = linear({ peak: 1, warmup: 10, floor: 0.1 })
    expect(lrAt(s, 0, 110)).toBe(0)
    expect(lrAt(s, 5, 110)).toBeCloseTo(0.5, 12)
    expect(lrAt(s, 10, 110)).toBeCloseTo(1, 12)
    expect(lrAt(s, 60, 110)).toBeCloseTo(0.55, 12)
    expect(lrAt(s, 109, 110)).toBeCloseTo(0.109, 12)
    expect(lrAt(s, 110, 110)).toBeCloseTo(0.1, 12)
    expect(lrAt(s, 500, 110)).toBe(0.1)
    // A floor of 0 decays to zero at the last update.
    const toZero = linear({ peak: 2, warmup: 0, floor: 0 })
    expect([0, 5, 10].map((t) => lrAt(toZero, t, 10))).toEqual([2, 1, 0])
  })

  it("wsd warms up, holds the peak, then decays linearly over the last fraction of the run (hand-computed points)", () => {
    // peak 1, warmup 10, decay 0.2 of 100 steps: stable from 10 to 80, then down 0.045 per step to 0.1.
    const s = wsd({ peak: 1, warmup: 10, decay: 0.2, floor: 0.1 })
    expect(lrAt(s, 0, 100)).toBe(0)
    expect(lrAt(s, 5, 100)).toBeCloseTo(0.5, 12)
    expect(lrAt(s, 10, 100)).toBe(1)
    expect(lrAt(s, 50, 100)).toBe(1)
    expect(lrAt(s, 80, 100)).toBeCloseTo(1, 12)
    expect(lrAt(s, 81, 100)).toBeCloseTo(0.955, 12)
    expect(lrAt(s, 90, 100)).toBeCloseTo(0.55, 12)
    expect(lrAt(s, 100, 100)).toBeCloseTo(0.1, 12)
    expect(lrAt(s, 101, 100)).toBe(0.1)
    // A warmup that runs into the decay meets it where the lines cross: 10 steps, decay 0.5 to
    // 0: the warmup line t/6 and the decay line (10 − t)/5 cross at t = 60/11.
    const short = wsd({ peak: 1, warmup: 6, decay: 0.5, floor: 0 })
    expect(lrAt(short, 3, 10)).toBeCloseTo(0.5, 12)
    expect(lrAt(short, 5, 10)).toBeCloseTo(5 / 6, 12)
    expect(lrAt(short, 6, 10)).toBeCloseTo(0.8, 12)
    expect(lrAt(short, 10, 10)).toBe(0)
    // The whole run decaying: from the peak at step 0 without warmup.
    expect(lrAt(wsd({ peak: 2, warmup: 0, decay: 1, floor: 0 }), 0, 4)).toBe(2)
    expect(lrAt(wsd({ peak: 2, warmup: 0, decay: 1, floor: 0 }), 1, 4)).toBeCloseTo(1.5, 12)
  })

  it("rejects invalid schedules and arguments with clear messages", () => {
    expect(() => linear({ peak: 1, warmup: 0, floor: -0.1 })).toThrow(/floor/)
    expect(() => linear({ peak: 1, warmup: 0, floor: 2 })).toThrow(/floor 2 exceeds peak 1/)
    expect(() => wsd({ peak: 1, warmup: 0, decay: 0, floor: 0 })).toThrow(/decay/)
    expect(() => wsd({ peak: 1, warmup: 0, decay: 1.5, floor: 0 })).toThrow(/decay/)
    expect(() => wsd({ peak: 1, warmup: 2.5, decay: 0.2, floor: 0 })).toThrow(/warmup/)
    expect(() => wsd({ peak: 1, warmup: 0, decay: 0.2, floor: 2 })).toThrow(/floor 2 exceeds peak 1/)
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
    expect(() => Schema.decodeUnknownSync(LrSchedule)({ _tag: "step", lr: 1 })).toThrow()
  })
})
