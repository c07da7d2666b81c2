import { Effect, Exit } from "effect"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { expandRuns, listExperiments, loadExperiment } from "../../src/experiment/load.js"

/** Every experiment file in experiments/ loads and expands into runs that decode, so `npm run exp <name>` starts. */
describe("the experiments in experiments/", { timeout: 60_000 }, () => {
  const names = listExperiments()
  it("include the speedrun and its records", () => {
    expect(names).toEqual(expect.arrayContaining(["base", "speedrun", "speedrun-records"]))
  })

  it.each(names)("%s expands into runs", async (name) => {
    const runs = mkdtempSync(join(tmpdir(), "experiments-"))
    const exit = await Effect.runPromiseExit(loadExperiment(name).pipe(Effect.flatMap((l) => expandRuns(l, { runs }))))
    if (Exit.isFailure(exit)) throw new Error(String(exit.cause))
    expect(exit.value.length).toBeGreaterThan(0)
  })
})
