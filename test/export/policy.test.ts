import * as tf from "@tensorflow/tfjs"
import { NodeServices } from "@effect/platform-node"
import { Effect } from "effect"
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type DecoderSpec, type DepthPolicy, earlyExit, gpt2, layerDrop, llama, mixtureOfDepths, withPolicy } from "../../dsl/index.js"
import { command as exportCommand } from "../../src/cli/export.js"
import { openRun } from "../../src/orchestration/run-dir.js"
import { toHuggingFace } from "../../src/export/hf.js"
import { toGguf } from "../../src/export/gguf.js"
import { toLlama2c } from "../../src/export/llama2c.js"
import { compile } from "../../src/model/index.js"
import { runInProcess } from "../cli/in-process.js"
import { command, root } from "../cli/process.js"
import { snapshot } from "../files.js"
import { fileOf, fixtureTokenizer, jsonOf, maxAbsDiff, projectLogits, randomWeights, safetensorsLookup, tensorsOf } from "./fixtures.js"
import { ggufAsLlama, readGguf } from "./gguf-reader.js"
import { gpt2Logits, llamaLogits } from "./reference.js"

/**
 * Exports of models with a depth policy: the formats run every block on every position, so a
 * policy whose evaluation and generation do that too exports exactly, and any other is refused
 * (or, with --drop-policy, left out and named).
 */
beforeAll(async () => {
  await tf.setBackend("cpu")
})

const tokenizer = fixtureTokenizer()
const base = { vocab: tokenizer.vocabSize, width: 32, context: 16, layers: 2, heads: 4 } as const
const ids = [256, 72, 300, 5, 677, 412, 33, 33, 90, 256, 140, 600]

/** The project's logits (under the policy, at inference) and the exported model's, read back by a float64 reference. */
const bothLogits = (spec: DecoderSpec, family: "gpt2" | "llama") => {
  const weights = randomWeights(spec, 5, 0.2)
  const result = toHuggingFace(spec, weights, tokenizer)
  if (!result.ok) throw new Error(result.problems.join("\n"))
  const params = tensorsOf(spec, weights)
  const ours = projectLogits(compile(spec), params, ids)
  tf.dispose(Object.values(params))
  const config = jsonOf(result.files, "config.json")
  const { lookup } = safetensorsLookup(fileOf(result.files, "model.safetensors"))
  return { weights, ours, theirs: family === "gpt2" ? gpt2Logits(config, lookup, ids) : llamaLogits(config, lookup, ids) }
}

describe("exports of models with a depth policy", () => {
  const exact: Array<[string, DepthPolicy]> = [
    ["layer-drop (every block runs at inference)", layerDrop({ rate: 0.3 })],
    ["early exit at threshold 1 (no token can leave), heads per block", earlyExit({ threshold: 1, heads: "per-block" })],
    ["early exit by saturation at threshold 1", earlyExit({ measure: "saturation", threshold: 1 })],
    ["mixture-of-depths at capacity 1 (nothing routed)", mixtureOfDepths({ capacity: 1, every: 1 })],
  ]
  for (const [name, policy] of exact) {
    for (const [family, preset] of [["gpt2", gpt2], ["llama", llama]] as const) {
      it(`${name}: the ${family} export's logits are the project's`, () => {
        const spec = withPolicy(preset(base), policy)
        const { weights, ours, theirs } = bothLogits(spec, family)
        expect(maxAbsDiff(theirs, ours)).toBeLessThan(1e-5)
        if (family === "llama") {
          const result = toGguf(spec, weights, tokenizer)
          if (!result.ok) throw new Error(result.problems.join("\n"))
          const { config, lookup } = ggufAsLlama(readGguf(fileOf(result.files, "model.gguf")))
          expect(maxAbsDiff(llamaLogits(config, lookup, ids, "interleaved"), ours)).toBeLessThan(1e-5)
        }
      })
    }
  }

  const departing: Array<[string, DepthPolicy, RegExp]> = [
    [
      "mixture-of-depths",
      mixtureOfDepths({ capacity: 0.5, every: 2 }),
      /^at \["layers","policy"\]: mixture-of-depths\(c=0\.5, every 2\): block 1 runs only the positions its predictor chooses; these formats run every block on every position/,
    ],
    ["early exit that can exit", earlyExit({ threshold: 0.75 }), /^at \["layers","policy"\]: early-exit\(softmax>0\.75, shared head\): a token whose softmax confidence exceeds 0\.75 leaves before the last block;/],
  ]
  for (const [name, policy, message] of departing) {
    it(`${name}: refused by every format, with the policy's path and why`, () => {
      for (const preset of [gpt2, llama]) {
        const spec = withPolicy(preset(base), policy)
        const weights = randomWeights(spec, 6)
        const results = preset === llama ? [toHuggingFace(spec, weights, tokenizer), toLlama2c(spec, weights, tokenizer), toGguf(spec, weights, tokenizer)] : [toHuggingFace(spec, weights, tokenizer)]
        for (const r of results) {
          expect(r.ok).toBe(false)
          if (!r.ok) expect(r.problems.join("\n")).toMatch(message)
        }
      }
    })
  }
})

describe("npm run export of runs with a depth policy", { timeout: 120_000 }, () => {
  const work = mkdtempSync(join(tmpdir(), "export-policy-"))
  afterAll(() => rmSync(work, { recursive: true, force: true }))
  const mod = join(work, "mod")
  const exits = join(work, "exits")

  beforeAll(async () => {
    const train = (name: string, policy: Record<string, unknown>) => {
      const spec = JSON.parse(readFileSync(join(root, "test/cli/fixtures/smoke-spec.json"), "utf8"))
      const file = join(work, `${name}.json`)
      writeFileSync(file, JSON.stringify({ ...spec, variant: name, model: { ...spec.model, layers: { ...spec.model.layers, policy } } }))
      return command("src/cli/exp.ts", [file, "--steps", "1", "--out", join(work, name)]).done
    }
    const done = await Promise.all([
      train("mod", { op: "policy", kind: "mixture-of-depths", capacity: 0.5, every: 2, predictor: 8 }),
      train("exits", { op: "policy", kind: "early-exit", measure: "softmax", threshold: 0.5, heads: "per-block" }),
    ])
    for (const d of done) expect(d.code, d.stderr).toBe(0)
  }, 120_000)

  it("refuses a mixture-of-depths run and an early-exit run with the policy's path, writing nothing", async () => {
    for (const [dir, kind] of [[mod, "mixture-of-depths"], [exits, "early-exit"]] as const) {
      const before = snapshot(dir)
      for (const format of ["hf", "llama2c", "gguf"]) {
        const r = await runInProcess(exportCommand, [dir, "--format", format])
        expect(r.code, `${kind} ${format}`).toBe(1)
        expect(r.stderr).toMatch(new RegExp(`cannot export to ${format}:\\n  - at \\["layers","policy"\\]: ${kind}\\(`))
        expect(existsSync(join(dir, "export")), `${kind} ${format}`).toBe(false)
      }
      expect(snapshot(dir)).toEqual(before)
    }
  })

  it("with --drop-policy exports the model without its policy and says so, in the output and the files", async () => {
    const out = join(work, "dropped")
    const r = await runInProcess(exportCommand, [mod, "--format", "hf", "--drop-policy", "--out", out])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toMatch(/dropped the depth policy mixture-of-depths\(c=0\.5, every 2\); the exported model runs every block on every position/)
    expect(JSON.parse(r.stdout)).toMatchObject({ droppedPolicy: "mixture-of-depths(c=0.5, every 2)" })
    const read = (name: string) => [{ name, data: readFileSync(join(out, name)) }]
    const config = jsonOf(read("config.json"), "config.json")
    expect(config["dropped_depth_policy"]).toBe("mixture-of-depths(c=0.5, every 2)")
    const { lookup, names } = safetensorsLookup(fileOf(read("model.safetensors"), "model.safetensors"))
    expect(names.some((n) => /router|predictor/.test(n))).toBe(false)
    // What was exported is the run's model without the policy, exactly.
    const ours = await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const open = yield* openRun(mod)
          return projectLogits(compile(withPolicy(open.run.model, undefined)), open.params, ids)
        }),
      ).pipe(Effect.provide(NodeServices.layer)),
    )
    expect(maxAbsDiff(gpt2Logits(config, lookup, ids), ours)).toBeLessThan(1e-5)
  })

  it("refuses --drop-policy on a run without a policy", async () => {
    const plain = join(root, "test/fixtures/pre-stack/gpt2")
    const r = await runInProcess(exportCommand, [plain, "--format", "hf", "--drop-policy", "--out", join(work, "nothing")])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/--drop-policy: at \["layers","policy"\]: the model has no depth policy to drop/)
    expect(existsSync(join(work, "nothing"))).toBe(false)
  })
})
