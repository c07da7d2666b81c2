import { describe, expect, it } from "vitest"
import { parseShard, type Shard, shardRuns } from "../../src/orchestration/shard.js"
import { Rng } from "../../src/random/rng.js"
import { command } from "../cli/process.js"

const runsOf = (variants: ReadonlyArray<string>, seeds: ReadonlyArray<number>) => variants.flatMap((variant) => seeds.map((seed) => ({ variant, seed })))
const key = (r: { variant: string; seed: number }) => `${r.variant}/${r.seed}`
const shuffled = <T>(xs: ReadonlyArray<T>, seed: number): T[] => {
  const rng = Rng.fromSeed(seed)
  const out = [...xs]
  for (let i = out.length - 1; i > 0; i--) {
    const j = rng.nextInt(i + 1)
    ;[out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}
const slices = (runs: ReadonlyArray<{ variant: string; seed: number }>, n: number) =>
  Array.from({ length: n }, (_, i) => shardRuns(runs, { index: i + 1, count: n } satisfies Shard).map(key))

describe("--shard i/n", () => {
  const variants = ["none", "learned", "sinusoidal", "rope", "alibi", "t5", "xpos"]
  const runs = runsOf(variants, [1, 2])

  it.each([1, 2, 3, 4, 5, 14, 20])("splits 7 variants × 2 seeds into %i disjoint slices that together are every run, sizes within one", (n) => {
    const parts = slices(runs, n)
    const all = parts.flat()
    expect(new Set(all).size).toBe(all.length)
    expect([...all].sort()).toEqual(runs.map(key).sort())
    const sizes = parts.map((p) => p.length)
    expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1)
  })

  it("gives every run the same slice however the experiment orders its variants and seeds", () => {
    const reference = slices(runs, 3).map((p) => [...p].sort())
    for (let seed = 1; seed <= 10; seed++) {
      const reordered = runsOf(shuffled(variants, seed), shuffled([1, 2], seed + 100))
      expect(slices(reordered, 3).map((p) => [...p].sort())).toEqual(reference)
    }
  })

  it("keeps the experiment's order inside a slice", () => {
    const slice = shardRuns(runs, { index: 2, count: 3 }).map(key)
    const positions = slice.map((k) => runs.map(key).indexOf(k))
    expect(positions).toEqual([...positions].sort((a, b) => a - b))
  })

  it("parses i/n and nothing else", () => {
    expect(parseShard("2/4")).toEqual({ index: 2, count: 4 })
    for (const bad of ["0/4", "5/4", "1/0", "2", "a/b", "1/4/2", "-1/2", ""]) expect(parseShard(bad), bad).toBeUndefined()
  })

  it("npm run exp slices an experiment's runs (shown with --print) and says what a bad --shard should be", async () => {
    const printed = await Promise.all([1, 2, 3].map((i) => command("src/cli/exp.ts", ["attention", "--shard", `${i}/3`, "--print"]).done))
    const listed = printed.map((p) => {
      expect(p.code, p.stderr).toBe(0)
      return [...p.stdout.matchAll(/^(\S+) \(seed (\d+)\)$/gm)].map((m) => `${m[1]}/${m[2]}`)
    })
    const all = listed.flat()
    expect(all.length).toBe(12)
    expect(new Set(all).size).toBe(12)
    const bad = await command("src/cli/exp.ts", ["attention", "--shard", "4/3"]).done
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('--shard: "4/3". Expected: i/n with 1 ≤ i ≤ n')
  })
})
