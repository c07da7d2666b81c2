import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { command } from "./process.js"

const results = (args: string[]) => command("src/cli/results.ts", args).done

/** A finished run's summary.json with the fields a results table reads. */
const summary = (variant: string, seed: number, valBpb: number) => ({
  experiment: "t",
  variant,
  seed,
  valLoss: 2 * valBpb,
  valBpb,
  lengths: { "512": { loss: 0, bpb: valBpb + 0.5 } },
  tokensPerSecond: 100,
  tokensTrained: 1000,
  params: { total: 2000, nonEmbedding: 1000, embedding: 1000 },
})

describe("npm run results", () => {
  it("tabulates the summary.json files under a directory, seeds pooled per variant", async () => {
    const dir = mkdtempSync(join(tmpdir(), "results-cli-"))
    for (const [variant, seed, bpb] of [["b", 1, 1.5], ["b", 2, 1.7], ["a", 1, 2]] as const) {
      mkdirSync(join(dir, variant, `seed${seed}`), { recursive: true })
      writeFileSync(join(dir, variant, `seed${seed}`, "summary.json"), JSON.stringify(summary(variant, seed, bpb)))
    }
    const done = await results([dir])
    expect(done.code).toBe(0)
    const rows = done.stdout.split("\n").filter((l) => l.startsWith("| a") || l.startsWith("| b"))
    expect(rows).toEqual([
      "| a | 1 | 2000 / 1000 | 1000 | 4.0000 | 2.0000 | 2.5000 | 100 |",
      "| b | 2 | 2000 / 1000 | 1000 | 3.2000 ± 0.2828 | 1.6000 ± 0.1414 | 2.1000 ± 0.1414 | 100 |",
    ])
  })

  it("says what is missing, with a non-zero exit", async () => {
    const empty = mkdtempSync(join(tmpdir(), "results-cli-"))
    const none = await results([empty])
    expect(none.code).toBe(1)
    expect(none.stderr).toContain(`no finished runs (summary.json) under ${empty}`)
    const absent = await results([join(empty, "nope")])
    expect(absent.code).toBe(1)
    expect(absent.stderr).toContain("does not exist")
  })
})
