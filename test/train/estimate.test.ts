import * as tf from "@tensorflow/tfjs"
import { NodeServices } from "@effect/platform-node"
import { Effect, Exit, Layer } from "effect"
import { mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { attention, block, decoder, depth, ffn, llama, paramCounts, posenc, type DecoderSpec } from "../../dsl/index.js"
import { tokenRunData } from "../../src/orchestration/data.js"
import type { RunSpec } from "../../src/experiment/define.js"
import { Rng } from "../../src/random/rng.js"
import { ProgressSink } from "../../src/io/progress.js"
import { adamw, lion, muon } from "../../src/experiment/optimizer/spec.js"
import { constant } from "../../src/schedule/index.js"
import { estimateTraining, memoryProblem } from "../../src/train/estimate.js"
import { trainRun } from "../../src/train/run.js"
import { describeNative } from "../backend/native-suite.js"
import { charTokenizer, tinyRun } from "./fixtures.js"

/**
 * The memory estimate made from a spec before anything is allocated: its parameter count is
 * the parameter table's, absurd sizes give figures instead of a RangeError, and on the native
 * backend it lands within a stated factor of a training step's measured peak.
 */
const gpt = (o: { vocab?: number; width?: number; context?: number; layers?: number; kind?: "full" | "sliding" | "sparse"; act?: "gelu" | "swiglu" | "relu"; pos?: "learned" | "alibi" | "rope"; checkpoint?: "blocks" } = {}): DecoderSpec =>
  decoder({
    ...(o.checkpoint ? { checkpoint: o.checkpoint } : {}),
    vocab: o.vocab ?? 512,
    width: o.width ?? 64,
    context: o.context ?? 64,
    posenc: posenc(o.pos ?? "learned"),
    layers: depth(
      o.layers ?? 2,
      block({
        attention: o.kind === "sliding" ? attention("sliding-window", { heads: 4, window: 32 }) : o.kind === "sparse" ? attention("sparse-strided", { heads: 4, stride: 32 }) : attention("full", { heads: 4 }),
        ffn: ffn(o.act ?? "gelu"),
      }),
    ),
  })

const optimizer = adamw({ lr: constant(1e-3) })

describe("memory estimate", () => {
  it("counts the parameters exactly, shared model-wide ones once, without a table of every block", () => {
    const specs = [
      gpt(),
      gpt({ layers: 7, kind: "sliding", act: "swiglu", pos: "rope" }),
      llama({ vocab: 300, width: 64, context: 32, layers: 3, heads: 4 }),
      decoder({ vocab: 100, width: 32, context: 64, layers: depth(5, block({ attention: attention("linformer-causal", { heads: 2, k: 8, block: 16, sharing: "layerwise" }), ffn: ffn("relu") })) }),
    ]
    for (const spec of specs) expect(estimateTraining(spec, { batch: 4, accumulate: 1, optimizer }).parameters).toBe(paramCounts(spec).total)
  })

  it("refuses absurd sizes with the figures, not a RangeError", () => {
    const limit = { bytes: 64 * 2 ** 30, source: "--max-memory 64G" }
    const cases: Array<[DecoderSpec, number, RegExp]> = [
      [gpt({ width: 1e9 }), 4, /parameter blocks\.0\.1\.ffn\.w_in \(1000000000×4000000000\) would hold 4\.00e\+18 values in one tensor/],
      [gpt({ layers: 1e6 }), 4, /training needs about .* TiB, more than the 64\.0 GiB of --max-memory 64G/],
      [gpt({ context: 1e6 }), 4, /attention scores \(4×4×1000000×1000000\) would hold/],
      [gpt(), 1e9, /would hold|training needs about/],
    ]
    for (const [spec, batch, message] of cases) {
      const problem = memoryProblem(estimateTraining(spec, { batch, accumulate: 1, optimizer }), { batch, context: spec.context }, limit)
      expect(problem).toMatch(message)
      expect(problem).toMatch(/parameters: .* of weights, .* of AdamW moments, .* of gradients\n  activations of one step at batch/)
    }
    expect(memoryProblem(estimateTraining(gpt(), { batch: 8, accumulate: 1, optimizer }), { batch: 8, context: 64 }, limit)).toBeUndefined()
  })

  it("grows with each size that costs memory", () => {
    const base = estimateTraining(gpt(), { batch: 8, accumulate: 1, optimizer })
    expect(estimateTraining(gpt({ context: 128 }), { batch: 8, accumulate: 1, optimizer }).activationBytes).toBeGreaterThan(2 * base.activationBytes)
    expect(estimateTraining(gpt(), { batch: 16, accumulate: 1, optimizer }).activationBytes).toBeCloseTo(2 * base.activationBytes, -3)
    expect(estimateTraining(gpt(), { batch: 8, accumulate: 4, optimizer }).gradientBytes).toBe(2 * base.gradientBytes)
    // Lion keeps one moment per weight, AdamW two; Muon is counted as AdamW, an upper bound.
    const withLion = estimateTraining(gpt(), { batch: 8, accumulate: 1, optimizer: lion({ lr: constant(1e-4) }) })
    expect(withLion.optimizerBytes).toBe(base.weightBytes)
    expect(base.optimizerBytes).toBe(2 * base.weightBytes)
    expect(base.totalBytes - withLion.totalBytes).toBe(base.weightBytes)
    expect(memoryProblem(withLion, { batch: 8, context: 64 }, { bytes: 1, source: "--max-memory 1" })).toMatch(/of weights, .* of Lion momentum, .* of gradients/)
    expect(estimateTraining(gpt(), { batch: 8, accumulate: 1, optimizer: muon({ lr: constant(0.02), adamw: { lr: constant(1e-3) } }) }).optimizerBytes).toBe(base.optimizerBytes)
    // Checkpointed blocks: one block's activations, plus each block's input (one more block, one more input of 8 × 64 × 64 floats).
    const deep = (layers: number, checkpoint?: "blocks") => estimateTraining(gpt({ layers, ...(checkpoint ? { checkpoint } : {}) }), { batch: 8, accumulate: 1, optimizer }).activationBytes
    expect(deep(12, "blocks")).toBeLessThan(deep(12) / 2)
    expect(deep(13, "blocks") - deep(12, "blocks")).toBe(4 * 8 * 64 * 64)
    // Evaluating at 16× the context (at the same tokens a batch) holds more than a training step does.
    expect(estimateTraining(gpt({ pos: "rope" }), { batch: 8, accumulate: 1, optimizer, evalLengths: [1024] }).activationBytes).toBeGreaterThan(estimateTraining(gpt({ pos: "rope" }), { batch: 8, accumulate: 1, optimizer }).activationBytes)
  })
})

const quiet = Layer.succeed(ProgressSink, { isTTY: false, columns: () => 80, write: () => {}, now: () => performance.now() })
const noise = (seed: number, n: number) => {
  const rng = Rng.fromSeed(seed)
  return Uint16Array.from({ length: n }, () => rng.nextInt(17))
}

describeNative("memory estimate against measured peaks (native backend)", () => {
  // What one step holds besides weights and optimiser state: the estimate's gradients and
  // activations against summary.json's stepPeakBytes. Measured when written (a step freeing
  // gradients and saved tensors as it goes, src/backend/gradients.ts, with the causal softmax,
  // the dense layers' epilogues and fused attention, sparse kinds as its parts): 0.81 (sparse
  // strided) to 1.21 (six checkpointed blocks).
  const configs: Array<[string, DecoderSpec, number]> = [
    ["dense", gpt(), 8],
    ["sliding window at context 256", gpt({ context: 256, kind: "sliding" }), 4],
    ["sparse strided at context 256", gpt({ context: 256, kind: "sparse" }), 4],
    ["SwiGLU at width 128", gpt({ width: 128, act: "swiglu" }), 8],
    ["ReLU", gpt({ act: "relu" }), 8],
    ["ALiBi at context 128", gpt({ context: 128, pos: "alibi" }), 8],
    ["RoPE with vocabulary 2048", gpt({ vocab: 2048, context: 128, pos: "rope" }), 8],
    ["six checkpointed blocks at context 128", gpt({ context: 128, layers: 6, checkpoint: "blocks" }), 4],
  ]
  it("counts no attention scores where the backend fuses attention (TFJS_NATIVE_FUSED_ATTENTION=1), and counts them where it does not", async () => {
    await tf.setBackend("native")
    process.env["TFJS_NATIVE_FUSED_ATTENTION"] = "1"
    const limit = { bytes: 16 * 2 ** 30, source: "--max-memory 16G" }
    const problem = () => memoryProblem(estimateTraining(gpt({ context: 1e6 }), { batch: 4, accumulate: 1, optimizer }), { batch: 4, context: 1e6 }, limit)
    const linear = () => estimateTraining(gpt({ context: 128 }), { batch: 8, accumulate: 1, optimizer }).activationBytes / estimateTraining(gpt(), { batch: 8, accumulate: 1, optimizer }).activationBytes
    try {
      expect(problem()).toMatch(/training needs about .* GiB, more than/)
      expect(linear()).toBeCloseTo(2, 5)
      process.env["TFJS_NATIVE_FUSED_ATTENTION"] = "0"
      expect(problem()).toMatch(/attention scores \(4×4×1000000×1000000\) would hold/)
      expect(linear()).toBeGreaterThan(2)
    } finally {
      delete process.env["TFJS_NATIVE_FUSED_ATTENTION"]
      await tf.setBackend("cpu")
    }
  })

  it.each(configs)("%s: within 0.7–1.3× of the measured step peak", async (_name, model, batch) => {
    await tf.setBackend("native")
    try {
      const base = tinyRun({ steps: 3 })
      const run: RunSpec = { ...base, model, training: { ...base.training, batch, accumulate: 1, eval: { every: 1000, tokens: 64, lengths: [] }, sample: { ...base.training.sample, tokens: 2 } } }
      const data = tokenRunData({ ...charTokenizer, vocabSize: model.vocab }, noise(1, 20_000), noise(2, 2_000), { train: 1, valid: 1 }, "noise-1-2")
      const out = mkdtempSync(join(tmpdir(), "estimate-"))
      const exit = await Effect.runPromiseExit(
        Effect.scoped(trainRun(run, data, { out, fresh: false, backend: { name: "native", detail: "test" }, resumeCommand: "" })).pipe(Effect.provide(Layer.merge(NodeServices.layer, quiet))),
      )
      expect(Exit.isSuccess(exit), String(Exit.isFailure(exit) && exit.cause)).toBe(true)
      const measured = (JSON.parse(readFileSync(join(out, "summary.json"), "utf8")) as { stepPeakBytes: number }).stepPeakBytes
      const e = estimateTraining(model, { batch, accumulate: 1, optimizer })
      const ratio = (e.gradientBytes + e.activationBytes) / measured
      expect(ratio).toBeGreaterThan(0.7)
      expect(ratio).toBeLessThan(1.3)
    } finally {
      await tf.setBackend("cpu")
    }
  })
})
