/**
 * `npm run bench -- distill [--backend X] [--threads N] [--rounds N] [--steps N] [--warmup N]`:
 * one optimiser step of a student (the base decoder at width 128: 4 layers, context 256,
 * batch 16) trained plainly, and distilled from a config-R teacher (the base decoder, width
 * 256) at T = 2, α = 0.5, with the teacher's forward pass alone for reference. The three run
 * interleaved, `steps` each per round; one JSON line per kind with the median seconds per
 * step over all rounds, tokens per second and (native backend) the step's peak tensor memory
 * above the weights and optimiser state.
 */
import * as tf from "@tensorflow/tfjs"
import { gpt2 } from "../dsl/index.js"
import { selectBackend } from "../src/backend/select.js"
import { peakMeter } from "../src/backend/peak-memory.js"
import { experiment, tinystories } from "../src/experiment/define.js"
import { adamw } from "../src/experiment/optimizer/spec.js"
import type { RunSpec } from "../src/experiment/define.js"
import { runAt } from "../src/experiment/run-ref.js"
import { compile, initValues } from "../src/model/index.js"
import { trainingObjective } from "../src/objective/objective.js"
import { distill } from "../src/experiment/objective/spec.js"
import { Rng } from "../src/random/rng.js"
import { AdamW } from "../src/optimizer/adamw.js"
import { constant } from "../src/schedule/index.js"

const [VOCAB, CONTEXT, BATCH] = [4096, 256, 16]

const flag = (argv: string[], name: string): string | undefined => {
  const i = argv.indexOf(name)
  return i >= 0 ? argv[i + 1] : undefined
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

export const main = async (argv: string[]): Promise<void> => {
  const threads = flag(argv, "--threads")
  if (threads !== undefined) process.env.TFJS_NATIVE_THREADS = threads
  const rounds = Number(flag(argv, "--rounds") ?? 3)
  const steps = Number(flag(argv, "--steps") ?? 2)
  const warmup = Number(flag(argv, "--warmup") ?? 1)
  const choice = await selectBackend(flag(argv, "--backend"))

  const teacherSpec = gpt2({ vocab: VOCAB, width: 256, context: CONTEXT, layers: 4, heads: 4, activation: "relu" })
  const studentSpec = gpt2({ vocab: VOCAB, width: 128, context: CONTEXT, layers: 4, heads: 4, activation: "relu" })
  const training = experiment({ description: "", models: studentSpec, data: tinystories({ tokenizer: { bpe: VOCAB } }), budget: { steps: 1 }, optimizer: adamw({ lr: constant(1e-3) }) }).training
  const run = (model: typeof studentSpec, extra: Partial<RunSpec> = {}): RunSpec => ({ format: 1, experiment: "bench", variant: "bench", seed: 1, model, training, ...extra })
  const teacherModel = compile(teacherSpec)
  const values = initValues(teacherModel.table, 2)
  const teacher = {
    dir: "(seeded teacher)",
    run: run(teacherSpec),
    params: Object.fromEntries(teacherModel.table.map((p) => [p.name, { shape: p.decl.shape, data: values.get(p.name)! }])),
    fingerprint: "",
  }
  const student = compile(studentSpec)
  const params = student.init(1) as Record<string, tf.Variable>
  const objectives = {
    plain: trainingObjective(run(studentSpec), student, []),
    distill: trainingObjective(run(studentSpec, { objective: distill({ teacher: runAt(teacher.dir), temperature: 2, alpha: 0.5 }) }), student, [teacher]),
  }
  const optimizer = new AdamW(params, { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, decay: (name) => student.table.find((p) => p.name === name)!.decl.decay })
  const paramOf = new Map(Object.entries(params).map(([name, v]) => [v.name, name]))
  const rng = Rng.derive(1, "bench-distill")
  const tokens = new Int32Array(BATCH * (CONTEXT + 1))
  const batch = () => {
    for (let i = 0; i < tokens.length; i++) tokens[i] = rng.nextInt(VOCAB)
    return { tokens: tf.tensor2d(tokens, [BATCH, CONTEXT + 1], "int32"), mask: tf.ones([BATCH, CONTEXT]) as tf.Tensor2D }
  }
  const kinds: Record<string, () => void> = {
    plain: () => {
      const { value, grads } = tf.tidy(() => {
        const b = batch()
        return tf.variableGrads(() => objectives.plain.loss(params, b, undefined, { training: true }))
      })
      optimizer.update(Object.fromEntries(Object.entries(grads).map(([v, g]) => [paramOf.get(v)!, g])), 1e-3)
      tf.dispose([value, ...Object.values(grads)])
    },
    distill: () => {
      const { value, grads } = tf.tidy(() => {
        const b = batch()
        const guide = objectives.distill.guide(b)
        return tf.variableGrads(() => objectives.distill.loss(params, b, guide, { training: true }))
      })
      optimizer.update(Object.fromEntries(Object.entries(grads).map(([v, g]) => [paramOf.get(v)!, g])), 1e-3)
      tf.dispose([value, ...Object.values(grads)])
    },
    "teacher forward": () => tf.tidy(() => void objectives.distill.guide(batch())!.logits.dataSync()),
  }

  const meter = peakMeter()
  const times: Record<string, number[]> = Object.fromEntries(Object.keys(kinds).map((k) => [k, []]))
  const peaks: Record<string, number> = {}
  for (const k of Object.keys(kinds)) for (let i = 0; i < warmup; i++) kinds[k]!()
  for (let r = 0; r < rounds; r++)
    for (const [k, f] of Object.entries(kinds))
      for (let i = 0; i < steps; i++) {
        meter?.start()
        const t0 = performance.now()
        f()
        times[k]!.push((performance.now() - t0) / 1000)
        if (meter) peaks[k] = Math.max(peaks[k] ?? 0, meter.peakAbove())
      }
  for (const [k, ts] of Object.entries(times)) {
    const s = median(ts)
    console.log(
      JSON.stringify({
        bench: "distill",
        kind: k,
        backend: choice.name,
        detail: choice.detail,
        student: { width: 128, layers: 4, params: student.counts.total },
        teacher: { width: 256, layers: 4, params: teacherModel.counts.total },
        batch: BATCH,
        context: CONTEXT,
        steps: ts.length,
        secondsPerStep: s,
        range: [Math.min(...ts), Math.max(...ts)],
        tokensPerSecond: (BATCH * CONTEXT) / s,
        ...(peaks[k] !== undefined ? { peakMiB: Math.round(peaks[k]! / 2 ** 20) } : {}),
        tensors: tf.memory().numTensors,
      }),
    )
  }
  objectives.distill.dispose()
  optimizer.dispose()
  tf.dispose(Object.values(params))
}
