import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { isInside, labelProblem, nameProblem, seedProblem } from "../../src/experiment/names.js"

describe("run names", () => {
  it.each(["base", "rope_gelu", "magnitude-global-50", "dropout0.1", "width384", "seed1", "a", "_x", "9"])("accepts %j", (name) => {
    expect(nameProblem(name)).toBeUndefined()
  })

  it.each([
    ["../smoke", /cannot name a run directory/],
    ["..", /cannot name a run directory/],
    [".", /cannot name a run directory/],
    ["a/b", /cannot name a run directory/],
    ["a\\b", /cannot name a run directory/],
    ["", /cannot name a run directory/],
    [" x", /cannot name a run directory/],
    ["-x", /cannot name a run directory/],
    ["x.", /cannot name a run directory/],
    ["a..b", /cannot name a run directory/],
    ["a b", /cannot name a run directory/],
    ["é", /cannot name a run directory/],
    ["x".repeat(101), /cannot name a run directory/],
    ["ledger", /reserved for the runs folder's own ledger directory/],
    ["Report", /reserved for the runs folder's own report directory/],
    ["imports", /reserved/],
  ])("refuses %j", (name, message) => {
    expect(nameProblem(name)).toMatch(message)
  })

  it("takes a derived run's variant label, which names no directory, but never a path", () => {
    expect(labelProblem("layerdrop, blocks 0,2,4")).toBeUndefined()
    expect(labelProblem("exits, exit softmax>0.5")).toBeUndefined()
    for (const bad of ["../smoke", "a\\b", "", ".", "..", "a\nb", "x".repeat(201)]) expect(labelProblem(bad)).toMatch(/cannot be a run's variant/)
  })

  it("refuses what is not a string", () => {
    expect(nameProblem(3)).toMatch(/expected a name, got 3/)
  })

  it.each([-1, 1.5, 2 ** 32, Number.NaN, "1"])("refuses the seed %j", (seed) => {
    expect(seedProblem(seed)).toMatch(/expected a seed: an integer in \[0, 4294967295\]/)
  })

  it("tells a directory inside a root from one outside", () => {
    expect(isInside("/r/runs", "/r/runs")).toBe(true)
    expect(isInside("/r/runs", join("/r/runs", "exp", "v"))).toBe(true)
    expect(isInside("/r/runs", join("/r/runs", "..", "smoke"))).toBe(false)
    expect(isInside("/r/runs", "/r/runs-other")).toBe(false)
    expect(isInside("/r/runs", "/elsewhere")).toBe(false)
  })
})
