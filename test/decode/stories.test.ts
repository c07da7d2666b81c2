import * as tf from "@tensorflow/tfjs"
import { NodeServices } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { afterEach, beforeAll, expect, it } from "vitest"
import { generate } from "../../src/eval/generate.js"
import { openRun } from "../../src/orchestration/run-dir.js"
import { Rng } from "../../src/random/rng.js"
import { ProgressSink } from "../../src/io/progress.js"
import { describeNative } from "../backend/native-suite.js"

/**
 * `npm run generate`'s stories do not change with the native decode path: on the tiny trained
 * runs of test/fixtures/pre-stack (GPT-2 and llama presets, T5 bias with sparse attention, a
 * post-norm Longformer stack with ALiBi, causal Linformer), the stories sampled with it equal
 * those tfjs samples, for several seeds, prompts and sampling settings, and the fixtures'
 * recorded story (printed by the stock cpu backend).
 */
const fixtures = join(import.meta.dirname, "../fixtures/pre-stack")
const expected = JSON.parse(readFileSync(join(fixtures, "expected.json"), "utf8")) as { variants: Record<string, { generate: string }> }
const quiet = Layer.succeed(ProgressSink, { isTTY: false, columns: () => 80, write: () => {}, now: () => performance.now() })

beforeAll(async () => {
  await tf.setBackend("native")
})

afterEach(() => {
  delete process.env["TFJS_NATIVE_DECODE"]
})

describeNative("stories sampled with the native decode path", { timeout: 300_000 }, () => {
  for (const variant of Object.keys(expected.variants)) {
    it(`${variant}: equal tfjs's, and the recorded one`, async () => {
      await Effect.runPromise(
        Effect.scoped(
          Effect.gen(function* () {
            const open = yield* openRun(join(fixtures, variant))
            const story = (native: boolean, seed: number, prompt: string, options: { temperature: number; topK?: number; topP?: number }, tokens: number) => {
              process.env["TFJS_NATIVE_DECODE"] = native ? "1" : "0"
              const ids = generate(open.model, open.params, Array.from(open.tokenizer.encode(prompt)), { tokens, stop: open.tokenizer.eotId, ...options }, Rng.derive(seed, "sample"))
              return prompt + open.tokenizer.decode(ids.filter((id) => id !== open.tokenizer.eotId))
            }
            const recorded = { temperature: 0.8, topK: 40, topP: 0.95 }
            expect(story(true, 3, "Once upon a time", recorded, 16)).toBe(expected.variants[variant]!.generate)
            for (const seed of [1, 2, 3])
              for (const prompt of ["Once upon a time", "Lily"])
                for (const options of [recorded, { temperature: 0 }, { temperature: 1 }]) expect(story(true, seed, prompt, options, 40)).toBe(story(false, seed, prompt, options, 40))
          }),
        ).pipe(Effect.provide(Layer.merge(NodeServices.layer, quiet))),
      )
    })
  }
})
