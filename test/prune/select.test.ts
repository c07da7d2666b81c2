import { describe, expect, it } from "vitest"
import { Rng } from "../../src/random/rng.js"
import { chooseRemoved, keepAllBut } from "../../src/prune/select.js"

/** The k lowest by a full sort of (value, index) pairs. */
const naiveRemoved = (xs: ArrayLike<number>, k: number): Set<number> =>
  new Set(
    Array.from(xs, (v, i) => ({ v, i }))
      .sort((a, b) => a.v - b.v || a.i - b.i)
      .slice(0, k)
      .map((p) => p.i),
  )

describe("choosing what to remove", () => {
  it("removes exactly the k lowest, ties to the lower index, as a full sort does", () => {
    const rng = Rng.fromSeed(3)
    for (const n of [1, 7, 100, 1000]) {
      // Few distinct values, so ties are many.
      const xs = Float32Array.from({ length: n }, () => rng.nextInt(5) / 4)
      for (const k of [0, 1, Math.floor(n / 3), n - 1, n]) {
        const keep = keepAllBut(xs, k)
        const removed = new Set(Array.from(keep).flatMap((m, i) => (m === 0 ? [i] : [])))
        expect(removed).toEqual(naiveRemoved(xs, k))
      }
    }
  })

  it("a count per layer removes that many of each layer's lowest", () => {
    const removed = chooseRemoved([[0.3, 0.1, 0.2, 0.4], [5, 1]], [2, 1])
    expect(removed).toEqual([[false, true, true, false], [false, true]])
  })

  it("a fraction ranks scores normalised per layer across layers and keeps one per layer", () => {
    // Layer 0's scores are 100× layer 1's; normalised, its 0.1 is its layer's weakest share.
    const scores = [[10, 80, 60], [0.5, 0.6, 0.1]]
    const norms = scores.map((s) => Math.hypot(...s))
    const normalised = scores.flatMap((s, u) => s.map((x, i) => ({ u, i, x: x / norms[u]! })))
    const removed = chooseRemoved(scores, 0.5)
    // round(0.5·6) = 3 removed: the three lowest normalised scores.
    const lowest = normalised.sort((a, b) => a.x - b.x).slice(0, 3)
    expect(removed.flat().filter(Boolean)).toHaveLength(3)
    for (const l of lowest) expect(removed[l.u]![l.i]).toBe(true)
    // Normalised: [0.6, 0.8] and [0, 0.6, 0.8]. Four of five asked: after 0, 0.6 and 0.6 each
    // layer has one left, so the 0.8s stay and only three go.
    expect(chooseRemoved([[3, 4], [0, 3, 4]], 0.8)).toEqual([[true, false], [true, true, false]])
  })
})
