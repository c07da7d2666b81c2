import * as tf from "@tensorflow/tfjs"
import { NodeServices } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { join } from "node:path"
import { posenc } from "../../dsl/index.js"
import type { RunSpec } from "../../src/experiment/define.js"
import { ProgressSink } from "../../src/io/progress.js"
import { trainRun } from "../../src/train/run.js"
import { syntheticData, tinyRun } from "../train/fixtures.js"

/**
 * Small real runs for the report's tests: an experiment "tiny" of two variants (learned and
 * rotary positions) × two seeds, 6 steps each with an evaluation every 2, written as `npm run
 * exp` writes them (<folder>/tiny/<variant>/seed<S>) and recorded in <folder>/ledger.
 */
export const tinyVariants = ["learned", "rope"] as const
export const tinySeeds = [1, 2] as const

const quiet = Layer.succeed(ProgressSink, { isTTY: false, columns: () => 80, write: () => {}, now: () => performance.now() })

export const tinyRunDir = (folder: string, variant: string, seed: number) => join(folder, "tiny", variant, `seed${seed}`)

export const makeTinyRuns = async (folder: string): Promise<void> => {
  await tf.setBackend("cpu")
  for (const variant of tinyVariants) {
    for (const seed of tinySeeds) {
      const base = tinyRun({ steps: 6, evalEvery: 2, seed, ...(variant === "rope" ? { posenc: posenc("rope") } : {}) })
      const run: RunSpec = { ...base, experiment: "tiny", variant }
      const program = trainRun(run, syntheticData(), {
        out: tinyRunDir(folder, variant, seed),
        fresh: false,
        backend: { name: "cpu", detail: "test" },
        resumeCommand: "(test)",
        ledger: { runsFolder: folder, code: { commit: "0000000000000000000000000000000000000000", dirty: false } },
      })
      await Effect.runPromise(Effect.scoped(program).pipe(Effect.provide(Layer.merge(NodeServices.layer, quiet))))
    }
  }
}
