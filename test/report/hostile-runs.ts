import { mkdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import type { RunSpec } from "../../src/experiment/define.js"
import { tinyRun } from "../train/fixtures.js"

/**
 * Run directories written by hand, without training, for the report's tests of what a run
 * directory can carry: the tiny model's spec, a summary and metrics with any field replaced.
 */
export const summaryOf = (run: Pick<RunSpec, "experiment" | "variant" | "seed">, valBpb: number) => ({
  experiment: run.experiment,
  variant: run.variant,
  seed: run.seed,
  specHash: "0",
  valLoss: 2 * valBpb,
  valBpb,
  valTokens: 256,
  lengths: { "16": { loss: 2 * valBpb, bpb: valBpb + 0.1 } },
  trainLoss: 2.5,
  params: { total: 2000, nonEmbedding: 1000, embedding: 1000 },
  flopsPerToken: { forward: 4000, training: 12000 },
  tokenizer: "bpe-512",
  tokenizerHash: "0",
  tokenBudget: 384,
  tokensTrained: 384,
  steps: 6,
  wallSeconds: 3,
  trainSeconds: 2,
  tokensPerSecond: 192,
  backend: "cpu",
  backendDetail: "test",
  machine: "test machine",
  sample: "Once upon a time",
})

export const metricRows = (steps: number, extra: (step: number) => object = () => ({})) =>
  Array.from({ length: steps }, (_, i) => ({ step: i + 1, tokens: 64 * (i + 1), loss: 3 - i / 10, lr: 1e-3, gradNorm: 1 + i / 10, tokensPerSecond: 100, ...((i + 1) % 2 === 0 ? { valLoss: 2, valBpb: 1.5 - i / 20 } : {}), ...extra(i + 1) }))

/** Writes a run directory: spec.json, and summary.json and metrics.jsonl as given (a string is written as it is). */
export const writeRun = (dir: string, o: { spec: object; summary?: object | string; metrics?: ReadonlyArray<object | string> }) => {
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, "spec.json"), JSON.stringify(o.spec, null, 2))
  if (o.summary !== undefined) writeFileSync(join(dir, "summary.json"), typeof o.summary === "string" ? o.summary : JSON.stringify(o.summary, null, 2))
  if (o.metrics !== undefined) writeFileSync(join(dir, "metrics.jsonl"), o.metrics.map((m) => (typeof m === "string" ? m : JSON.stringify(m))).join("\n") + "\n")
}

export const specOf = (experiment: string, variant: string, seed: number, prompt = "abc"): RunSpec => {
  const base = tinyRun({ steps: 6, evalEvery: 2, seed })
  return { ...base, experiment, variant, training: { ...base.training, sample: { ...base.training.sample, prompt } } }
}
