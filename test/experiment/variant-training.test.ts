import { Effect, Exit } from "effect"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { expandRuns, loadExperiment } from "../../src/experiment/load.js"
import { root } from "../cli/process.js"

/**
 * A variant may carry its own optimiser, budget and batch (a speedrun's records are recipes,
 * not only models): its runs get them over the experiment's, the command line's caps still
 * apply, and a bad field is named at the variant's path before anything runs.
 */
const experimentFile = (models: string): string => {
  const file = join(mkdtempSync(join(tmpdir(), "variant-training-")), "recipes.ts")
  writeFileSync(
    file,
    `import { attention, block, decoder, depth, ffn } from ${JSON.stringify(join(root, "dsl/index.ts"))}\n` +
      `import { adamw, constant, cosine, experiment, muon, tinystories, variant } from ${JSON.stringify(join(root, "src/index.ts"))}\n` +
      `const small = decoder({ vocab: 512, width: 32, context: 32, layers: depth(2, block({ attention: attention("full", { heads: 2 }), ffn: ffn("gelu") })) })\n` +
      `export default experiment({ description: "", models: ${models}, data: tinystories({ tokenizer: { bpe: 512 } }), budget: { tokens: 4096 }, batch: 4,\n` +
      `  optimizer: adamw({ lr: constant(1e-3) }), seeds: [1] })\n`,
  )
  return file
}
const runsOf = (file: string, overrides: { steps?: number } = {}) => Effect.runPromiseExit(loadExperiment(file).pipe(Effect.flatMap((l) => expandRuns(l, overrides))))

describe("a variant's own training", () => {
  const recipes = experimentFile(
    `{ base: small, fast: variant(small, { optimizer: muon({ lr: cosine({ peak: 0.02, warmup: 10, floor: 0 }), adamw: { lr: constant(3e-3) } }), budget: { tokens: 8192, bpb: 1.5 }, batch: 8 }) }`,
  )

  it("replaces the experiment's optimiser, budget and batch for that variant only", async () => {
    const exit = await runsOf(recipes)
    if (Exit.isFailure(exit)) throw new Error(String(exit.cause))
    const [base, fast] = exit.value
    expect(base!.training).toMatchObject({ budget: { tokens: 4096 }, batch: 4, optimizer: { kind: "adamw" } })
    expect(fast!.training).toMatchObject({ budget: { tokens: 8192, bpb: 1.5 }, batch: 8, optimizer: { kind: "muon" } })
    // What the variant does not set is the experiment's.
    expect(fast!.training.eval).toEqual(base!.training.eval)
    expect(fast!.training.accumulate).toBe(base!.training.accumulate)
  })

  it("keeps the variant's target under --steps, which caps every variant", async () => {
    const exit = await runsOf(recipes, { steps: 3 })
    if (Exit.isFailure(exit)) throw new Error(String(exit.cause))
    expect(exit.value.map((r) => r.training.budget)).toEqual([{ steps: 3 }, { steps: 3, bpb: 1.5 }])
  })

  it("names a bad field at the variant's path", async () => {
    const exit = await runsOf(experimentFile(`{ bad: variant(small, { batch: 0, budget: { tokens: 10, bpb: -1 } }) }`))
    expect(Exit.isFailure(exit)).toBe(true)
    const message = String(Exit.isFailure(exit) ? exit.cause : "")
    expect(message).toMatch(/at \["models","bad","training","batch"\]/)
    expect(message).toMatch(/at \["models","bad","training","budget"/)
  })
})
