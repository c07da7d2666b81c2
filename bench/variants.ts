/**
 * `npm run bench -- variants <experiment> [--variants a,b] [--rounds N] [--steps N] [--warmup N]
 * [--threads N]`: the training speed and step memory of an experiment's models, side by side
 * in one process: each variant's model at the experiment's batch and context, on seeded random
 * tokens, in interleaved rounds of N steps (so a machine's drift falls on every variant alike);
 * one JSON line per variant with the median and range of its rounds' tokens/s and the most
 * tensor memory a step held beyond weights and optimiser state (native backend).
 */
import { Effect } from "effect"
import { peakMeter } from "../src/backend/peak-memory.js"
import { selectBackend } from "../src/backend/select.js"
import { expandRuns, loadExperiment } from "../src/experiment/load.js"
import { compile } from "../src/model/index.js"
import { trainingSteps } from "./train-step.js"

const flag = (argv: string[], name: string): string | undefined => {
  const i = argv.indexOf(name)
  return i >= 0 ? argv[i + 1] : undefined
}

const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

export const main = async (argv: string[]): Promise<void> => {
  const [target] = argv
  if (target === undefined || target.startsWith("--")) throw new Error("usage: npm run bench -- variants <experiment> [--variants a,b] [--rounds N] [--steps N] [--warmup N] [--threads N]")
  const threads = flag(argv, "--threads")
  if (threads !== undefined) process.env.TFJS_NATIVE_THREADS = threads
  const rounds = Number(flag(argv, "--rounds") ?? 3)
  const steps = Number(flag(argv, "--steps") ?? 4)
  const warmup = Number(flag(argv, "--warmup") ?? 1)
  const choice = await selectBackend(flag(argv, "--backend"))
  const runs = await Effect.runPromise(Effect.flatMap(loadExperiment(target), (loaded) => expandRuns(loaded, {})))
  const wanted = flag(argv, "--variants")?.split(",")
  const plain = runs.filter((r, i) => runs.findIndex((q) => q.variant === r.variant) === i && r.prune === undefined && (wanted === undefined || wanted.includes(r.variant)))
  const benches = plain.map((r) => {
    const model = compile(r.model)
    return { run: r, model, ...trainingSteps(model, r.training.batch), rates: [] as number[], peaks: [] as number[] }
  })
  const meter = peakMeter()
  for (const b of benches) for (let i = 0; i < warmup; i++) b.step()
  for (let round = 0; round < rounds; round++) {
    for (const b of benches) {
      const start = process.hrtime.bigint()
      for (let i = 0; i < steps; i++) {
        meter?.start()
        b.step()
        if (meter) b.peaks.push(meter.peakAbove())
      }
      const seconds = Number(process.hrtime.bigint() - start) / 1e9
      b.rates.push((steps * b.run.training.batch * b.run.model.context) / seconds)
    }
  }
  for (const b of benches) {
    console.log(
      JSON.stringify({
        bench: "variants",
        experiment: b.run.experiment,
        variant: b.run.variant,
        backend: choice.name,
        detail: choice.detail,
        batch: b.run.training.batch,
        context: b.run.model.context,
        params: b.model.counts,
        flopsPerToken: b.model.flops.forward,
        rounds,
        stepsPerRound: steps,
        tokensPerSecond: { median: Math.round(median(b.rates)), min: Math.round(Math.min(...b.rates)), max: Math.round(Math.max(...b.rates)) },
        ...(b.peaks.length > 0 ? { stepPeakMiB: Math.round(Math.max(...b.peaks) / 2 ** 20) } : {}),
      }),
    )
    b.dispose()
  }
}
