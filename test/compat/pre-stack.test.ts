import * as tf from "@tensorflow/tfjs"
import { NodeServices } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { createHash } from "node:crypto"
import { mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { evaluateRun } from "../../src/orchestration/evaluate-run.js"
import { generate } from "../../src/eval/generate.js"
import { loadRunData } from "../../src/orchestration/data.js"
import { expandRuns, loadExperiment } from "../../src/experiment/load.js"
import { openRun } from "../../src/orchestration/run-dir.js"
import { Rng } from "../../src/random/rng.js"
import { ProgressSink } from "../../src/io/progress.js"
import { trainRun } from "../../src/train/run.js"

/**
 * Run directories written by commit c029a9f, before heterogeneous stacks (five tiny models:
 * GPT-2 and llama presets, T5 bias with sparse-fixed attention, a post-norm Longformer block
 * with ALiBi and an untied head, causal Linformer with a layer-shared projection). The
 * figures in expected.json were printed by that commit's commands on the stock cpu backend,
 * whose arithmetic is the same on every machine; today's code must reproduce them exactly.
 */
const fixtures = join(import.meta.dirname, "../fixtures/pre-stack")
interface Expected {
  readonly variants: Record<string, { eval: Record<string, { valLoss: number; valBpb: number }>; generate: string; replayCpuSha256: string }>
}
const expected = JSON.parse(readFileSync(join(fixtures, "expected.json"), "utf8")) as Expected
const quiet = Layer.succeed(ProgressSink, { isTTY: false, columns: () => 80, write: () => {}, now: () => performance.now() })
const run = <A, E>(effect: Effect.Effect<A, E, any>): Promise<A> =>
  Effect.runPromise(Effect.scoped(effect).pipe(Effect.provide(Layer.merge(NodeServices.layer, quiet))) as Effect.Effect<A, E>)

beforeAll(async () => {
  await tf.setBackend("cpu")
})

describe("run directories written before stacks", { timeout: 300_000 }, () => {
  for (const [variant, want] of Object.entries(expected.variants)) {
    const dir = join(fixtures, variant)
    it(`${variant}: evaluates to the same loss and samples the same story`, async () => {
      const before = tf.memory().numTensors
      const { evaluation, story } = await run(
        Effect.gen(function* () {
          const open = yield* openRun(dir)
          const evaluation = yield* evaluateRun(open, { tokens: 2048 })
          const prompt = Array.from(open.tokenizer.encode("Once upon a time"))
          const ids = generate(open.model, open.params, prompt, { tokens: 16, temperature: 0.8, topK: 40, topP: 0.95, stop: open.tokenizer.eotId }, Rng.derive(3, "sample"))
          return { evaluation, story: "Once upon a time" + open.tokenizer.decode(ids.filter((id) => id !== open.tokenizer.eotId)) }
        }),
      )
      expect(evaluation.loss).toBe(want.eval["cpu"]!.valLoss)
      expect(evaluation.bpb).toBe(want.eval["cpu"]!.valBpb)
      expect(story).toBe(want.generate)
      expect(tf.memory().numTensors).toBe(before)
    })
  }

  // Training on stock cpu takes seconds a run; these two cover every naming rule (a block
  // given as a list, a layer-shared parameter, an untied head).
  for (const variant of ["mixed", "linformer"]) {
    it(`${variant}: its spec.json replays to the same weights, bit for bit`, async () => {
      const out = mkdtempSync(join(tmpdir(), "replay-"))
      await run(
        Effect.gen(function* () {
          const loaded = yield* loadExperiment(join(fixtures, variant, "spec.json"))
          const [spec] = yield* expandRuns(loaded, {})
          const data = yield* loadRunData(spec!.training.data)
          return yield* trainRun(spec!, data, { out, fresh: false, backend: { name: "cpu", detail: "test" }, resumeCommand: "(test)" })
        }),
      )
      const sha = createHash("sha256").update(readFileSync(join(out, "checkpoint", "model.safetensors"))).digest("hex")
      expect(sha).toBe(expected.variants[variant]!.replayCpuSha256)
    })
  }
})
