/** The figures the generation benchmark summarises its rounds with. */

export const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

const round = (x: number): number => Math.round(x * 10) / 10

/** Median and range of the rounds, one decimal. */
export const spread = (xs: ReadonlyArray<number>): { readonly median: number; readonly min: number; readonly max: number } => ({
  median: round(median(xs)),
  min: round(Math.min(...xs)),
  max: round(Math.max(...xs)),
})

/** F: how many times fewer FLOPs per position the policy spends than the plain model (above 1: fewer). */
export const flopRatio = (plainFlops: number, policyFlops: number): number => Math.round((plainFlops / policyFlops) * 1000) / 1000

/**
 * The threshold in [lo, hi] at which `blocksAt` (blocks per position, rising with the
 * threshold) first reaches `target`, by bisection: the upper end of the last bracket, so
 * blocks per position there are at least the target when any threshold in range reaches it.
 */
export const thresholdFor = (blocksAt: (threshold: number) => number, target: number, lo: number, hi: number, steps = 24): number => {
  for (let i = 0; i < steps; i++) {
    const mid = (lo + hi) / 2
    if (blocksAt(mid) < target) lo = mid
    else hi = mid
  }
  return hi
}
