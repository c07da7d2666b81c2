/**
 * `npm run bench -- train [--backend X] [--bf16] [--threads N] [--steps N] [--warmup N] [--optimizer adamw,muon] [--profile]`:
 * trains config R (the base decoder: vocab 4096, width 256, 4 layers, 4 heads, context 256,
 * batch 16) on seeded random tokens and prints one JSON line per optimiser (AdamW by default;
 * a comma list times each on its own copy of the model, their steps interleaved so a busy
 * machine slows all alike), with resident memory and live tensors after the first and last
 * timed step. bench/torch_reference.py runs the same model and AdamW step in PyTorch for
 * side-by-side figures. `--profile` then runs as many steps again per optimiser with every
 * kernel timed and prints where a step's time goes, kernel by kernel.
 */
import * as tf from "@tensorflow/tfjs"
import { gpt2 } from "../dsl/index.js"
import { selectBackend } from "../src/backend/select.js"
import { compile } from "../src/model/index.js"
import { UsageError } from "../src/cli/boundary.js"
import { profileKernels } from "./kernel-profile.js"
import { type BenchOptimizer, benchOptimizers, trainingSteps } from "./train-step.js"

const CONFIG = { vocab: 4096, width: 256, layers: 4, heads: 4, context: 256, batch: 16 } as const

const flag = (argv: string[], name: string): string | undefined => {
  const i = argv.indexOf(name)
  return i >= 0 ? argv[i + 1] : undefined
}

const USAGE = "npm run bench -- train [--backend X] [--bf16] [--threads N] [--steps N] [--warmup N] [--optimizer adamw,muon] [--profile]"

/** The optimisers `--optimizer` names, in order. */
export const optimizersOf = (value: string): BenchOptimizer[] => {
  const names = value.split(",")
  for (const name of names)
    if (!Object.hasOwn(benchOptimizers, name))
      throw new UsageError({ message: `--optimizer: "${name}" is not one of ${Object.keys(benchOptimizers).join(", ")} (a comma list times several)\nusage: ${USAGE}` })
  return names as BenchOptimizer[]
}

export const main = async (argv: string[]): Promise<void> => {
  const optimizers = optimizersOf(flag(argv, "--optimizer") ?? "adamw")
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
  const runs = optimizers.map((optimizer) => ({
    optimizer,
    ...trainingSteps(model, batch, 1, optimizer),
    seconds: 0,
    losses: [] as number[],
    // Resident memory after each timed step: flat over a long run means nothing accumulates.
    rss: [] as number[],
    tensors: [] as number[],
  }))

  for (let i = 0; i < warmup; i++) for (const r of runs) r.step()
  for (let i = 0; i < steps; i++)
    for (const r of runs) {
      const start = process.hrtime.bigint()
      r.losses.push(r.step())
      r.seconds += Number(process.hrtime.bigint() - start) / 1e9
      r.rss.push(process.memoryUsage().rss / 2 ** 20)
      r.tensors.push(tf.memory().numTensors)
    }

  const tokensPerStep = batch * context
  const flopsPerStep = model.flops.training * tokensPerStep
  const active = tf.backend() as { precision?: string }
  for (const { optimizer, seconds, losses, rss, tensors } of runs)
    console.log(
      JSON.stringify({
        bench: "train",
        backend: choice.name,
        detail: choice.detail,
        precision: active.precision ?? "fp32",
        optimizer,
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
  if (argv.includes("--profile")) {
    const kernels = profileKernels(tf.getBackend())
    for (const r of runs) profile(kernels, r.optimizer, r.step, steps, r.seconds / steps)
  }
}

/** `steps` more steps with every kernel timed: one JSON line per kernel, its share of the step, and what the kernels leave to the engine. */
const profile = (kernels: ReturnType<typeof profileKernels>, optimizer: BenchOptimizer, step: () => number, steps: number, unprofiledSeconds: number): void => {
  step()
  kernels.reset()
  const start = process.hrtime.bigint()
  for (let i = 0; i < steps; i++) step()
  const msPerStep = Number(process.hrtime.bigint() - start) / 1e6 / steps
  const rows = kernels.read()
  const inKernels = rows.reduce((a, r) => a + r.ms, 0) / steps
  for (const r of rows)
    console.log(JSON.stringify({ bench: "train-profile", optimizer, kernel: r.kernel, callsPerStep: r.calls / steps, msPerStep: r.ms / steps, share: r.ms / steps / msPerStep }))
  console.log(JSON.stringify({ bench: "train-profile", optimizer, kernel: "(outside kernels)", msPerStep: msPerStep - inKernels, share: (msPerStep - inKernels) / msPerStep, profiledMsPerStep: msPerStep, unprofiledMsPerStep: unprofiledSeconds * 1e3 }))
}
