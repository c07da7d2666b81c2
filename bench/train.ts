/**
 * `npm run bench -- train [--backend X] [--bf16] [--threads N] [--steps N] [--warmup N] [--profile]`: trains config R
 * (the base decoder: vocab 4096, width 256, 4 layers, 4 heads, context 256, batch 16) with
 * AdamW on seeded random tokens and prints one JSON line, with resident memory and live
 * tensors after the first and last timed step. bench/torch_reference.py runs the
 * same model and step in PyTorch for side-by-side figures. `--profile` then runs as many steps
 * again with every kernel timed and prints where a step's time goes, kernel by kernel.
 */
import * as tf from "@tensorflow/tfjs"
import { gpt2 } from "../dsl/index.js"
import { selectBackend } from "../src/backend/select.js"
import { compile } from "../src/model/index.js"
import { profileKernels } from "./kernel-profile.js"
import { trainingSteps } from "./train-step.js"

const CONFIG = { vocab: 4096, width: 256, layers: 4, heads: 4, context: 256, batch: 16 } as const

const flag = (argv: string[], name: string): string | undefined => {
  const i = argv.indexOf(name)
  return i >= 0 ? argv[i + 1] : undefined
}

export const main = async (argv: string[]): Promise<void> => {
  const bf16 = argv.includes("--bf16")
  // Read when the native backend registers, i.e. inside selectBackend.
  if (bf16) process.env.TFJS_NATIVE_BF16 = "1"
  const threads = flag(argv, "--threads")
  if (threads !== undefined) process.env.TFJS_NATIVE_THREADS = threads
  const steps = Number(flag(argv, "--steps") ?? 5)
  const warmup = Number(flag(argv, "--warmup") ?? 2)
  const choice = await selectBackend(flag(argv, "--backend"))

  const { vocab, width, layers, heads, context, batch } = CONFIG
  const model = compile(gpt2({ vocab, width, context, layers, heads, activation: "relu" }))
  const { step } = trainingSteps(model, batch)

  for (let i = 0; i < warmup; i++) step()
  const losses: number[] = []
  // Resident memory after each timed step: flat over a long run means nothing accumulates.
  const rss: number[] = []
  const tensors: number[] = []
  const start = process.hrtime.bigint()
  for (let i = 0; i < steps; i++) {
    losses.push(step())
    rss.push(process.memoryUsage().rss / 2 ** 20)
    tensors.push(tf.memory().numTensors)
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9

  const tokensPerStep = batch * context
  const flopsPerStep = model.flops.training * tokensPerStep
  const active = tf.backend() as { precision?: string }
  console.log(
    JSON.stringify({
      bench: "train",
      backend: choice.name,
      detail: choice.detail,
      precision: active.precision ?? "fp32",
      config: CONFIG,
      params: model.counts.total,
      steps,
      secondsPerStep: seconds / steps,
      tokensPerSecond: (tokensPerStep * steps) / seconds,
      gflopPerStep: flopsPerStep / 1e9,
      gflops: (flopsPerStep * steps) / seconds / 1e9,
      loss: losses[losses.length - 1],
      rssMiB: { first: Math.round(rss[0]!), last: Math.round(rss[rss.length - 1]!), peak: Math.round(Math.max(...rss)) },
      tensors: { first: tensors[0], last: tensors[tensors.length - 1] },
    }),
  )
  if (argv.includes("--profile")) profile(step, steps, seconds / steps)
}

/** `steps` more steps with every kernel timed: one JSON line per kernel, its share of the step, and what the kernels leave to the engine. */
const profile = (step: () => number, steps: number, unprofiledSeconds: number): void => {
  const kernels = profileKernels(tf.getBackend())
  step()
  kernels.reset()
  const start = process.hrtime.bigint()
  for (let i = 0; i < steps; i++) step()
  const msPerStep = Number(process.hrtime.bigint() - start) / 1e6 / steps
  const rows = kernels.read()
  const inKernels = rows.reduce((a, r) => a + r.ms, 0) / steps
  for (const r of rows)
    console.log(JSON.stringify({ bench: "train-profile", kernel: r.kernel, callsPerStep: r.calls / steps, msPerStep: r.ms / steps, share: r.ms / steps / msPerStep }))
  console.log(JSON.stringify({ bench: "train-profile", kernel: "(outside kernels)", msPerStep: msPerStep - inKernels, share: (msPerStep - inKernels) / msPerStep, profiledMsPerStep: msPerStep, unprofiledMsPerStep: unprofiledSeconds * 1e3 }))
}
