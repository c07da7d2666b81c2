import type { Remove } from "../experiment/prune/methods/structured.js"
import { removedOf } from "../experiment/prune/methods/structured.js"

/**
 * Choosing what to remove from scores, exactly: the k lowest of a tensor or row (ties go to
 * the lower index, so the count is always k), and whole heads or neurons across layers.
 */

/** A keep mask (1 keeps, 0 removes) removing the k lowest `scores`, lower index first among equals. */
export const keepAllBut = (scores: ArrayLike<number>, k: number): Float32Array => {
  const n = scores.length
  const keep = new Float32Array(n).fill(1)
  if (k <= 0) return keep
  if (k >= n) return keep.fill(0)
  const sorted = Float64Array.from(scores).sort()
  const threshold = sorted[k - 1]!
  let below = 0
  for (let i = 0; i < n; i++) if (scores[i]! < threshold) below++
  let ties = k - below
  for (let i = 0; i < n; i++) {
    const s = scores[i]!
    if (s < threshold) keep[i] = 0
    else if (s === threshold && ties > 0) {
      keep[i] = 0
      ties--
    }
  }
  return keep
}

/**
 * Which heads (or neurons) of each layer to remove, from their scores. A count per layer
 * removes that many of its lowest; a fraction removes that share of all of them, lowest
 * first after dividing each layer's scores by their L2 norm (Michel et al.), skipping any
 * whose layer would be left with none.
 */
export const chooseRemoved = (scores: ReadonlyArray<ArrayLike<number>>, remove: Remove): boolean[][] => {
  if (typeof remove !== "number") return scores.map((s, u) => Array.from(keepAllBut(s, remove[u]!), (k) => k === 0))
  const removed = scores.map((s) => new Array<boolean>(s.length).fill(false))
  const total = scores.reduce((a, s) => a + s.length, 0)
  let n = removedOf(remove, total)
  const candidates = scores.flatMap((s, u) => {
    const norm = Math.sqrt(Array.from(s).reduce((a, x) => a + x * x, 0))
    return Array.from(s, (x, i) => ({ u, i, score: norm > 0 ? x / norm : x }))
  })
  candidates.sort((a, b) => a.score - b.score || a.u - b.u || a.i - b.i)
  const left = scores.map((s) => s.length)
  for (const c of candidates) {
    if (n === 0) break
    if (left[c.u]! <= 1) continue
    removed[c.u]![c.i] = true
    left[c.u]!--
    n--
  }
  return removed
}
