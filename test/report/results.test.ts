import { describe, expect, it } from "vitest"
import { resultOf, resultsTable, type RunResult, targetLine } from "../../src/report/results.js"
import { checkSummary } from "../../src/report/summary.js"

const run = (variant: string, seed: number, valBpb: number, extra: Partial<RunResult> = {}): RunResult => ({
  variant,
  seed,
  valLoss: valBpb * 2,
  valBpb,
  tokensPerSecond: 1000 * seed,
  tokensTrained: 262_144,
  params: { total: 1_340_000, nonEmbedding: 793_000 },
  ...extra,
})

const rows = (table: string): string[][] =>
  table.split("\n").map((l) => l.split("|").slice(1, -1).map((c) => c.trim()))

describe("results table", () => {
  it("gives mean ± sample standard deviation over seeds and each seed's bpb in seed order, one row per variant in first-seen order", () => {
    const [header, , a, b] = rows(resultsTable([run("rope", 3, 1.9), run("alibi", 1, 2), run("rope", 1, 1.5), run("rope", 2, 1.7)]))
    expect(header).toEqual(["variant", "seeds", "params (total / non-emb)", "tokens", "val loss", "val bpb", "val bpb per seed", "tokens/s"])
    // 1.5, 1.7, 1.9: mean 1.7, sample variance ((0.2² + 0 + 0.2²) / 2) = 0.04.
    expect(a).toEqual(["rope", "3", "1.34M / 793k", "262k", "3.4000 ± 0.4000", "1.7000 ± 0.2000", "1.5000, 1.7000, 1.9000", "2000"])
    expect(b).toEqual(["alibi", "1", "1.34M / 793k", "262k", "4.0000", "2.0000", "2.0000", "1000"])
    // With one seed everywhere the column would repeat val bpb: it is left out.
    expect(rows(resultsTable([run("rope", 1, 1.5), run("alibi", 1, 2)]))[0]).not.toContain("val bpb per seed")
  })

  it("adds extra columns and a step memory column in MiB only when some run measured it", () => {
    const table = resultsTable([
      run("full", 1, 1, { stepPeakBytes: 100 * 2 ** 20, extra: { "bpb@512": 1.25 } }),
      run("full", 2, 1, { stepPeakBytes: 102 * 2 ** 20, extra: { "bpb@512": 1.75 } }),
      run("window", 1, 1),
    ])
    const [header, , full, window] = rows(table)
    expect(header.slice(-3)).toEqual(["bpb@512", "tokens/s", "step memory (MiB)"])
    expect(full!.slice(-3)).toEqual(["1.5000 ± 0.3536", "1500", "101"])
    expect(window!.slice(-3)).toEqual(["n/a", "1000", "n/a"])
  })

  it("prints the speedrun's figures to target as seconds to a tenth, tokens as a count and FLOPs as a power of ten", () => {
    const reached = (seconds: number, tokens: number, flops: number) => ({ extra: { secondsToTarget: seconds, tokensToTarget: tokens, flopsToTarget: flops } })
    const [header, , alibi] = rows(resultsTable([run("alibi", 1, 1.0392, reached(535.3002, 2_354_736, 6.72798867456e13)), run("alibi", 2, 1.04, reached(545.3002, 2_454_736, 7.02798867456e13))]))
    expect(header!.slice(-4, -1)).toEqual(["secondsToTarget", "tokensToTarget", "flopsToTarget"])
    // Means 540.3, 2.40M, 6.878e13; sample standard deviations 7.07, 70.7k, 2.121e12.
    expect(alibi!.slice(-4, -1)).toEqual(["540.3 ± 7.1", "2.40M ± 70.7k", "6.878e+13 ± 2.121e+12"])
  })

  it("adds blocks and MFLOPs per token spent, for every row, only when some run spent other than its nominal compute", () => {
    const nominal = { forward: 4e6, training: 12e6 }
    const spent = (evalFlops: number, blocks: number, trainFlops = 12e6) => ({
      flopsPerToken: nominal,
      spent: { eval: { flopsPerToken: evalFlops, blocksPerToken: blocks }, training: { flopsPerToken: trainFlops, blocksPerToken: 6 } },
    })
    expect(rows(resultsTable([run("plain", 1, 1, spent(4e6, 6)), run("old", 1, 1)]))[0]).not.toContain("blocks/token")
    const [header, , plain, exits, old] = rows(resultsTable([run("plain", 1, 1, spent(4e6, 6)), run("exit", 1, 1, spent(2.5e6, 3.25)), run("exit", 2, 1, spent(3.5e6, 4.75)), run("old", 1, 1)]))
    expect(header!.slice(-4)).toEqual(["blocks/token", "eval MFLOP/token", "train MFLOP/token", "tokens/s"])
    expect(plain!.slice(-4)).toEqual(["6.00", "4.0000", "12.0000", "1000"])
    expect(exits!.slice(-4, -1)).toEqual(["4.00 ± 1.06", "3.0000 ± 0.7071", "12.0000 ± 0.0000"])
    expect(old!.slice(-4, -1)).toEqual(["n/a", "n/a", "n/a"])
  })

  it("does not count a run that trained on nothing (one-shot pruning) as spending other than its nominal compute", () => {
    const nominal = { forward: 4e6, training: 12e6 }
    const oneShot = run("pruned", 1, 1, { tokensTrained: 0, flopsPerToken: nominal, spent: { eval: { flopsPerToken: 4e6, blocksPerToken: 6 }, training: { flopsPerToken: 0, blocksPerToken: 0 } } })
    const [header, , row] = rows(resultsTable([oneShot]))
    expect(header).not.toContain("train MFLOP/token")
    expect(row!.at(-1)).toBe("n/a")
    // Beside a run that did spend other than nominal, its training column says it trained on nothing.
    const exit = run("exit", 1, 1, { flopsPerToken: nominal, spent: { eval: { flopsPerToken: 3e6, blocksPerToken: 4 }, training: { flopsPerToken: 12e6, blocksPerToken: 6 } } })
    const [, , pruned] = rows(resultsTable([oneShot, exit]))
    expect(pruned!.slice(-4)).toEqual(["6.00", "4.0000", "n/a", "n/a"])
  })

  const tune = "tune (last 250 train stories)"
  it("names the held-out training stories in the headers when every run was evaluated on them", () => {
    const [header, , row] = rows(resultsTable([run("rope", 1, 1.5, { evalText: tune }), run("rope", 2, 1.7, { evalText: tune })]))
    expect(header).toEqual(["variant", "seeds", "params (total / non-emb)", "tokens", `loss on ${tune}`, `bpb on ${tune}`, `bpb per seed on ${tune}`, "tokens/s"])
    expect(row!.slice(0, 2)).toEqual(["rope", "2"])
    // A summary that says "valid", and one from before evalText was recorded, are the same text.
    expect(rows(resultsTable([run("rope", 1, 1.5, { evalText: "valid" }), run("rope", 2, 1.7)]))[0]).toContain("val bpb")
  })

  it("never averages figures on different texts: a row per variant and text, with the text in its own column", () => {
    const [header, , valid, tuned, other] = rows(resultsTable([run("rope", 1, 1.5), run("rope", 2, 1.9, { evalText: tune }), run("rope", 3, 1.7), run("alibi", 1, 2, { evalText: tune })]))
    expect(header!.slice(0, 7)).toEqual(["variant", "seeds", "evaluated on", "params (total / non-emb)", "tokens", "loss", "bpb"])
    expect(valid!.slice(0, 3)).toEqual(["rope", "2", "valid"])
    expect(valid![6]).toBe("1.6000 ± 0.1414")
    expect(tuned!.slice(0, 3)).toEqual(["rope", "1", tune])
    expect(tuned![6]).toBe("1.9000")
    expect(other!.slice(0, 3)).toEqual(["alibi", "1", tune])
  })

  it("reads a summary whose evalText is not a string as on an unknown text, with a warning, never as valid.txt's", () => {
    const raw = { variant: "rope", seed: 1, valLoss: 3, valBpb: 1.5, tokensTrained: 1, tokensPerSecond: 1, params: { total: 1, nonEmbedding: 1 }, lengths: {}, evalText: 7 }
    const checked = checkSummary(raw, "s.json", { page: false })
    if (checked._tag !== "Read") throw new Error(checked.warning)
    expect(checked.warnings).toEqual(["s.json: evalText is 7, expected a string; its figures are marked as on an unknown text"])
    const [header, , row] = rows(resultsTable([resultOf(checked.summary), run("rope", 2, 1.7)]))
    expect(header).toContain("evaluated on")
    expect(row!.slice(0, 3)).toEqual(["rope", "1", "unknown"])
  })

  it("gives the optimiser's FLOPs to the target beside the model's, and leaves out a summary's that is not a number", () => {
    const reached = { step: 275, valBpb: 1.0291, tokens: 1_126_168, trainSeconds: 328.5, trainingFlops: 3.2177e13, optimizerFlops: 5.5e12 }
    expect(targetLine({ bpb: 1.042, reached })).toBe(
      "target val bpb 1.042: reached at step 275 (val bpb 1.0291) after 328.5 s of training, 1.13M tokens, 3.218e+13 training FLOPs and 5.500e+12 of the optimiser's",
    )
    // AdamW's updates run no matrix products: nothing to add.
    expect(targetLine({ bpb: 1.042, reached: { ...reached, optimizerFlops: 0 } })).toMatch(/training FLOPs$/)
    const raw = { variant: "muon", seed: 1, valLoss: 3, valBpb: 1.03, tokensTrained: 1, tokensPerSecond: 1, params: { total: 1, nonEmbedding: 1 }, lengths: {} }
    const good = checkSummary({ ...raw, target: { bpb: 1.042, reached } }, "s.json", { page: false })
    if (good._tag !== "Read") throw new Error(good.warning)
    expect(resultOf(good.summary).extra).toMatchObject({ flopsToTarget: 3.2177e13, optimizerFlopsToTarget: 5.5e12 })
    const bad = checkSummary({ ...raw, target: { bpb: 1.042, reached: { ...reached, optimizerFlops: "5e12" } } }, "s.json", { page: false })
    if (bad._tag !== "Read") throw new Error(bad.warning)
    expect(bad.warnings).toHaveLength(1)
    expect(bad.warnings[0]).toMatch(/^s\.json: target is .* expected \{ bpb, reached: null or \{ .*optimizerFlops\? \} numbers \}; left out$/)
    expect(bad.summary.target).toBeUndefined()
  })

  it("says which text a target was measured on", () => {
    const target = { bpb: 1.05, reached: null }
    expect(targetLine(target)).toBe("target val bpb 1.05: not reached within the budget")
    expect(targetLine(target, tune)).toBe(`target bpb on ${tune} 1.05: not reached within the budget`)
  })
})
