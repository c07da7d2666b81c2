import { createHash } from "node:crypto"

/**
 * Slicing an experiment's (variant, seed) runs for `--shard i/n`, so a scheduler (a SLURM
 * array job, GNU parallel, a Kubernetes Indexed Job) can spread a sweep over machines that
 * share the runs folder. A run's slice depends only on its variant name and seed and on the
 * other runs' names, never on the order the experiment lists its variants: the runs are
 * ranked by a hash of (variant, seed) and dealt round-robin, so the slices are disjoint,
 * together complete, and differ in size by at most one.
 */
export interface Shard {
  /** 1-based: the i-th of n slices. */
  readonly index: number
  readonly count: number
}

/** What `--shard` accepts, for messages. */
export const shardExpected = "i/n with 1 ≤ i ≤ n, e.g. 2/4 for the second of four slices"

/** Parses "i/n" (1 ≤ i ≤ n); undefined for anything else. */
export const parseShard = (text: string): Shard | undefined => {
  const m = /^(\d+)\/(\d+)$/.exec(text.trim())
  if (m === null) return undefined
  const index = Number(m[1])
  const count = Number(m[2])
  return count < 1 || index < 1 || index > count ? undefined : { index, count }
}

const rankKey = (variant: string, seed: number): string => createHash("sha256").update(`${variant}\u0000${seed}`).digest("hex")

/** The runs of slice `shard`, in their original order. */
export const shardRuns = <R extends { readonly variant: string; readonly seed: number }>(runs: ReadonlyArray<R>, shard: Shard): R[] => {
  const ranked = runs.map((r) => ({ r, key: rankKey(r.variant, r.seed) })).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
  const chosen = new Set(ranked.filter((_, rank) => rank % shard.count === shard.index - 1).map((x) => x.r))
  return runs.filter((r) => chosen.has(r))
}
