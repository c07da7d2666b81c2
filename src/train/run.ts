import * as tf from "@tensorflow/tfjs"
import { Console, Data, Effect, FileSystem, Option, Path, Scope } from "effect"
import { diffSpecs, formatDiff } from "../../dsl/diff.js"
import { hashSpec } from "../../dsl/hash.js"
import { peakMeter } from "../backend/peak-memory.js"
import type { BackendChoice } from "../backend/select.js"
import { evaluate, type Evaluation, type HostBatch } from "../eval/evaluate.js"
import { generate } from "../eval/generate.js"
import type { RunSpec } from "../experiment/define.js"
import { writeFileAtomic } from "../io/atomic-write.js"
import { compile } from "../model/compile.js"
import type { Params } from "../model/init.js"
import type { NamedParam } from "../../dsl/params.js"
import { trainingObjective } from "../objective/objective.js"
import { Rng } from "../random/rng.js"
import { progressBar, type ProgressSink } from "../report/progress.js"
import { AdamW, clipByGlobalNorm, GradientAccumulator } from "./adamw.js"
import { type CheckpointError, loadCheckpoint, saveCheckpoint, type TensorArrays } from "./checkpoint.js"
import type { RunData } from "./run-data.js"
import { lrAt } from "./schedule.js"
import { prepareSources, warmStartArrays } from "./sources.js"

/**
 * One run (one variant, one seed) as an Effect program: check the run directory and any
 * checkpoint → compile → restore or initialise → a loop of steps with periodic evaluation
 * and checkpoints → summary. Interruption (Ctrl-C, SIGTERM) saves a checkpoint at the last
 * completed step before the program exits; a non-finite loss stops the run and keeps the
 * last good checkpoint.
 */
export class RunError extends Data.TaggedError("RunError")<{ readonly problem: string }> {
  override get message(): string {
    return this.problem
  }
}

export interface RunOptions {
  readonly out: string
  /** Ignore an existing checkpoint (it is replaced at the first new one). */
  readonly fresh: boolean
  readonly backend: BackendChoice
  /** How to resume, for the message printed on interruption. */
  readonly resumeCommand: string
}

export interface Summary {
  readonly experiment: string
  readonly variant: string
  readonly seed: number
  readonly specHash: string
  readonly valLoss: number
  readonly valBpb: number
  readonly valTokens: number
  /** Validation figures at longer sequence lengths, by length (only those the position scheme supports). */
  readonly lengths: Readonly<Record<string, { readonly loss: number; readonly bpb: number }>>
  readonly trainLoss: number
  readonly params: { readonly total: number; readonly nonEmbedding: number; readonly embedding: number }
  readonly flopsPerToken: { readonly forward: number; readonly training: number }
  readonly tokenizer: string
  readonly tokenizerHash: string
  readonly tokenBudget: number
  readonly tokensTrained: number
  readonly steps: number
  readonly wallSeconds: number
  /** Seconds spent in optimiser steps (evaluation, sampling and start-up excluded). */
  readonly trainSeconds: number
  /** Training throughput: tokens trained / trainSeconds. */
  readonly tokensPerSecond: number
  /**
   * The most tensor memory an optimiser step held beyond the weights and optimiser state kept
   * between steps (activations, gradients, update temporaries), in bytes. Measured on the
   * native backend only; a process's first step, which also creates the optimiser moments,
   * does not count.
   */
  readonly stepPeakBytes?: number
  readonly backend: string
  /** What the backend said of itself: for the native one, its ISA, threads and matmul precision (fp32 or bf16). */
  readonly backendDetail: string
  readonly sample: string
}

/** Fields whose change alters the trained weights; eval, checkpoint and sampling settings do not. */
export const trainingIdentity = (run: RunSpec) => ({
  model: run.model,
  seed: run.seed,
  data: run.training.data,
  budget: run.training.budget,
  batch: run.training.batch,
  accumulate: run.training.accumulate,
  optimizer: run.training.optimizer,
  // Absent for plain cross-entropy from scratch, so earlier runs keep their hashes.
  ...(run.objective && run.objective.kind !== "cross-entropy" ? { objective: run.objective } : {}),
  ...(run.init ? { init: run.init } : {}),
})

export const totalSteps = (run: RunSpec): number => {
  const b = run.training.budget
  if ("steps" in b) return b.steps
  return Math.max(1, Math.ceil(b.tokens / (run.training.batch * run.training.accumulate * run.model.context)))
}

const toArrays = (tensors: Readonly<Record<string, tf.Tensor>>): TensorArrays =>
  Object.fromEntries(Object.entries(tensors).map(([k, t]) => [k, { shape: t.shape, data: t.dataSync() as Float32Array }]))

const restoreParams = (table: ReadonlyArray<NamedParam>, params: Params, saved: TensorArrays, where: string): string | undefined => {
  for (const p of table) {
    const s = saved[p.name]
    if (s === undefined) return `${where}: parameter "${p.name}" is missing`
    if (s.shape.join(",") !== p.decl.shape.join(",")) return `${where}: "${p.name}" has shape [${s.shape}], the spec expects [${p.decl.shape}]`
  }
  const extra = Object.keys(saved).filter((k) => params[k] === undefined)
  if (extra.length > 0) return `${where}: has parameters the spec lacks: ${extra.slice(0, 5).join(", ")}`
  for (const p of table) tf.tidy(() => params[p.name]!.assign(tf.tensor(saved[p.name]!.data, [...p.decl.shape], "float32")))
  return undefined
}

/** Per-step dropout seed: a pure function of run seed and step, so resumes draw identical masks. */
const dropoutSeed = (seed: number, step: number, micro: number): number => (Rng.derive(seed, `dropout/${step}/${micro}`).nextUint32() >>> 1)

interface StepResult {
  readonly loss: number
  readonly gradNorm: number
  readonly tokens: number
}

const toTensors = (b: HostBatch) => ({
  tokens: tf.tensor2d(b.tokens, [b.batch, b.context + 1], "int32"),
  mask: tf.tensor2d(b.mask, [b.batch, b.context], "float32"),
})

export const trainRun = (
  requested: RunSpec,
  data: RunData,
  options: RunOptions,
): Effect.Effect<Summary, RunError | CheckpointError, FileSystem.FileSystem | Path.Path | ProgressSink | Scope.Scope> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const dir = options.out
    const fail = (problem: string) => new RunError({ problem })
    // A teacher or warm-start run is opened and checked first; its fingerprint joins the spec.
    const sources = yield* prepareSources(requested, data).pipe(Effect.mapError((e) => fail(e.message)))
    const run = sources.run
    const t = run.training
    const specHash = hashSpec(trainingIdentity(run))

    if (data.tokenizer.vocabSize !== run.model.vocab) {
      return yield* fail(`the model's vocab ${run.model.vocab} differs from the tokenizer's ${data.tokenizer.vocabSize}`)
    }
    // Every check that can fail happens before the first step: the directory must be writable.
    const probe = path.join(dir, `.write-probe-${process.pid}`)
    yield* fs.makeDirectory(dir, { recursive: true }).pipe(
      Effect.andThen(fs.writeFileString(probe, "")),
      Effect.andThen(fs.remove(probe)),
      Effect.mapError((e) => fail(`cannot write to the output directory ${dir}: ${e.message}`)),
    )

    const existing = options.fresh ? Option.none() : yield* loadCheckpoint(dir)
    if (Option.isSome(existing) && existing.value.state.specHash !== specHash) {
      const oldSpec = yield* fs.readFileString(path.join(dir, "spec.json")).pipe(
        Effect.map((s) => JSON.parse(s) as RunSpec),
        Effect.option,
      )
      const changes = Option.isSome(oldSpec) ? `\nchanges from the checkpoint's spec.json:\n${formatDiff(diffSpecs(trainingIdentity(oldSpec.value), trainingIdentity(run)))}` : ""
      return yield* fail(
        `${dir} holds a checkpoint of a different run (spec hash ${existing.value.state.specHash}, this one is ${specHash}).${changes}\n` +
          `Use --fresh to discard it or --out DIR to train elsewhere.`,
      )
    }

    const model = compile(run.model)
    const steps = totalSteps(run)
    const writeJson = (name: string, value: unknown) =>
      writeFileAtomic(path.join(dir, name), JSON.stringify(value, null, 2) + "\n").pipe(Effect.mapError((e) => fail(e.message)))
    yield* writeJson("spec.json", run)
    yield* writeFileAtomic(path.join(dir, "tokenizer.json"), data.tokenizer.json()).pipe(Effect.mapError((e) => fail(e.message)))

    const params = yield* Effect.acquireRelease(
      Effect.sync(() => model.init(run.seed)),
      (p) => Effect.sync(() => tf.dispose(Object.values(p))),
    )
    const objective = yield* Effect.acquireRelease(
      Effect.sync(() => trainingObjective(run, model, sources.teacher)),
      (o) => Effect.sync(() => o.dispose()),
    )
    // The objective's own tensors (hidden-state projections) train and checkpoint with the model's.
    const trainable: Params = { ...params, ...objective.params }
    const table = [...model.table, ...objective.table]
    const optimizer = yield* Effect.acquireRelease(
      Effect.sync(
        () =>
          new AdamW(trainable as Record<string, tf.Variable>, {
            beta1: t.optimizer.beta1,
            beta2: t.optimizer.beta2,
            eps: t.optimizer.eps,
            weightDecay: t.optimizer.weightDecay,
            decay: (name) => t.optimizer.decayAll || table.find((p) => p.name === name)!.decl.decay,
          }),
      ),
      (o) => Effect.sync(() => o.dispose()),
    )

    let step = 0
    let tokensSeen = 0
    let elapsedBefore = 0
    // Time spent in optimiser steps only, so throughput is not diluted by evaluation and sampling.
    let trainSeconds = 0
    let stepPeakBytes: number | undefined = undefined
    let cursor: unknown = undefined
    if (Option.isSome(existing)) {
      const ck = existing.value
      const where = path.join(dir, "checkpoint", "model.safetensors")
      const problem = restoreParams(table, trainable, ck.params, where)
      if (problem !== undefined) return yield* fail(problem)
      yield* Effect.try({
        try: () => optimizer.importState({ step: ck.state.step, moments: ck.optimizer }),
        catch: (e) => fail(`${path.join(dir, "checkpoint", "optimizer.safetensors")}: ${(e as Error).message}`),
      })
      step = ck.state.step
      tokensSeen = ck.state.tokensSeen
      cursor = ck.state.dataCursor
      const extra = ck.state.extra as { elapsedSeconds?: number; trainSeconds?: number; stepPeakBytes?: number } | undefined
      elapsedBefore = extra?.elapsedSeconds ?? 0
      trainSeconds = extra?.trainSeconds ?? 0
      stepPeakBytes = extra?.stepPeakBytes
      if (step > steps) return yield* fail(`${dir}: the checkpoint is at step ${step}, past this run's ${steps} steps`)
    } else if (sources.warmStart) {
      const problem = restoreParams(model.table, params, warmStartArrays(model.table, sources.warmStart.params, run.init?.blocks), sources.warmStart.dir)
      if (problem !== undefined) return yield* fail(problem)
    }
    const stream = yield* Effect.try({
      try: () => data.trainStream(t.batch, run.model.context, run.seed, cursor),
      catch: (e) => fail(`cannot restore the data cursor: ${(e as Error).message}`),
    })

    // metrics.jsonl keeps the rows up to the checkpoint's step, so a resumed run continues it seamlessly.
    const metricsPath = path.join(dir, "metrics.jsonl")
    const oldRows = step === 0 ? [] : yield* fs.readFileString(metricsPath).pipe(
      Effect.map((s) => s.split("\n").filter((l) => l.trim() !== "" && (JSON.parse(l) as { step: number }).step <= step)),
      Effect.orElseSucceed(() => [] as string[]),
    )
    yield* writeFileAtomic(metricsPath, oldRows.map((r) => r + "\n").join("")).pipe(Effect.mapError((e) => fail(e.message)))
    const metrics = yield* fs.open(metricsPath, { flag: "a" }).pipe(Effect.mapError((e) => fail(`cannot open ${metricsPath}: ${e.message}`)))
    const appendMetric = (row: Record<string, unknown>) =>
      metrics.writeAll(new TextEncoder().encode(JSON.stringify(row) + "\n")).pipe(Effect.mapError((e) => fail(`cannot write ${metricsPath}: ${e.message}`)))

    // The cursor as of the last whole step: a failure mid-step may have drawn batches past it.
    let cursorAfterStep = stream.cursor()
    const startedAt = performance.now()
    const elapsed = () => elapsedBefore + (performance.now() - startedAt) / 1000
    let savedStep = Option.isSome(existing) ? step : -1
    let healthy = true
    const save = Effect.suspend(() =>
      saveCheckpoint(dir, {
        params: toArrays(trainable),
        optimizer: optimizer.exportState().moments,
        state: {
          step,
          tokensSeen,
          specHash,
          dataCursor: cursorAfterStep,
          // Dropout masks derive from (seed, step); the data order lives in the cursor.
          rng: { seed: run.seed, dropout: "derived from seed and step" },
          optimizer: { step: optimizer.step, ...t.optimizer },
          extra: { elapsedSeconds: elapsed(), trainSeconds, ...(stepPeakBytes === undefined ? {} : { stepPeakBytes }) },
        },
      }).pipe(Effect.tap(() => Effect.sync(() => (savedStep = step)))),
    )

    const paramOfVariable = new Map(Object.entries(trainable).map(([name, v]) => [v.name, name]))
    const accumulator = new GradientAccumulator()
    yield* Effect.addFinalizer(() => Effect.sync(() => accumulator.reset()))
    const trainStep = (): StepResult => {
      let lossSum = 0
      let tokens = 0
      for (let micro = 0; micro < t.accumulate; micro++) {
        const hb = stream.next()
        tokens += hb.mask.reduce((s, w) => s + w, 0)
        const { value, grads } = tf.tidy(() => {
          const batch = toTensors(hb)
          const guide = objective.guide(batch)
          return tf.variableGrads(() => objective.loss(params, batch, guide, { training: true, dropoutSeed: dropoutSeed(run.seed, step + 1, micro) }))
        })
        lossSum += value.dataSync()[0]!
        // tfjs keys gradients by its global variable names; the optimiser wants parameter names.
        accumulator.add(Object.fromEntries(Object.entries(grads).map(([varName, g]) => [paramOfVariable.get(varName)!, g])))
        tf.dispose([value, ...Object.values(grads)])
      }
      const mean = accumulator.mean()
      accumulator.reset()
      const loss = lossSum / t.accumulate
      const clipped = t.optimizer.clip > 0 ? clipByGlobalNorm(mean, t.optimizer.clip) : { grads: mean, norm: Number.NaN }
      const gradNorm = t.optimizer.clip > 0 ? clipped.norm : tf.tidy(() => tf.sqrt(tf.addN(Object.values(mean).map((g) => tf.sum(tf.square(g))))).dataSync()[0]!)
      // A non-finite loss or gradient leaves the parameters untouched: the run stops at the last good state.
      if (Number.isFinite(loss) && Number.isFinite(gradNorm)) optimizer.update(clipped.grads, lrAt(t.optimizer.lr, step + 1, steps))
      tf.dispose(Object.values(mean))
      if (clipped.grads !== mean) tf.dispose(Object.values(clipped.grads))
      return { loss, gradNorm, tokens }
    }

    const runEval = (): Evaluation => evaluate(model, params, data.validBatches(t.batch, run.model.context, t.eval.tokens), data.bytesPerToken.valid)

    yield* Effect.addFinalizer((exit) =>
      exit._tag === "Failure" && healthy && step > savedStep && step > 0
        ? save.pipe(
            Effect.andThen(Console.error(`\nStopped at step ${step}/${steps}; checkpoint saved in ${path.join(dir, "checkpoint")}.\nResume with: ${options.resumeCommand}`)),
            Effect.catch((e: CheckpointError) => Console.error(`\nStopped at step ${step}, but saving the checkpoint failed: ${e.message}`)),
          )
        : Effect.void,
    )

    const bar = yield* progressBar({ label: `${run.experiment}/${run.variant}/seed${run.seed}`, total: steps, start: step, unit: "step" })
    let tokensThisSession = 0
    let lastLoss = Number.NaN
    let lastEval: Evaluation | undefined
    const meter = peakMeter()
    while (step < steps) {
      const stepStart = performance.now()
      meter?.start()
      const r = trainStep()
      if (meter && tokensThisSession > 0) stepPeakBytes = Math.max(stepPeakBytes ?? 0, meter.peakAbove())
      if (!Number.isFinite(r.loss) || !Number.isFinite(r.gradNorm)) {
        healthy = false
        return yield* fail(
          `the loss became ${r.loss} (gradient norm ${r.gradNorm}) at step ${step + 1}; the run stopped. ` +
            (savedStep >= 0 ? `The last good checkpoint (step ${savedStep}) is kept in ${path.join(dir, "checkpoint")}.` : "No checkpoint had been written yet.") +
            " Try a lower learning rate or stronger clipping.",
        )
      }
      trainSeconds += (performance.now() - stepStart) / 1000
      step += 1
      cursorAfterStep = stream.cursor()
      tokensSeen += r.tokens
      tokensThisSession += r.tokens
      lastLoss = r.loss
      const row: Record<string, unknown> = {
        step,
        tokens: tokensSeen,
        loss: r.loss,
        lr: lrAt(t.optimizer.lr, step, steps),
        gradNorm: r.gradNorm,
        tokensPerSecond: r.tokens / ((performance.now() - stepStart) / 1000),
        // Live tensors after the step: flat over a healthy run, growing if something leaks.
        tensors: tf.memory().numTensors,
      }
      if (step % t.eval.every === 0 || step === steps) {
        lastEval = runEval()
        Object.assign(row, { valLoss: lastEval.loss, valBpb: lastEval.bpb, valTokens: lastEval.tokens })
        yield* bar.log(`step ${step}: train loss ${r.loss.toFixed(4)}, val loss ${lastEval.loss.toFixed(4)}, val bpb ${lastEval.bpb.toFixed(4)}`)
      }
      yield* appendMetric(row)
      yield* bar.update({ current: step, loss: r.loss, tokens: tokensThisSession })
      if (step % t.checkpoint.every === 0 || step === steps) yield* save
      // Interruption lands here, between steps, so a saved state is always a whole step.
      yield* Effect.yieldNow
    }

    const finalEval = lastEval ?? runEval()
    // Longer sequences than trained on, where the position scheme can represent them.
    const maxLength = model.maxLength
    const lengths: Record<string, { loss: number; bpb: number }> = {}
    for (const length of (t.eval.lengths ?? []).filter((l) => maxLength === undefined || l <= maxLength)) {
      const e = evaluate(model, params, data.validBatches(Math.max(1, Math.floor((t.batch * run.model.context) / length)), length, t.eval.tokens), data.bytesPerToken.valid)
      lengths[String(length)] = { loss: e.loss, bpb: e.bpb }
      yield* bar.log(`length ${length}: val loss ${e.loss.toFixed(4)}, val bpb ${e.bpb.toFixed(4)}`)
    }
    const s = t.sample
    const prompt = Array.from(data.tokenizer.encode(s.prompt))
    const sampleIds = generate(model, params, prompt, { tokens: s.tokens, temperature: s.temperature, topK: s.topK > 0 ? s.topK : undefined, topP: s.topP, stop: data.tokenizer.eotId }, Rng.derive(run.seed, "sample"))
    const sample = s.prompt + data.tokenizer.decode(sampleIds.filter((id) => id !== data.tokenizer.eotId))
    const wallSeconds = elapsed()
    const summary: Summary = {
      experiment: run.experiment,
      variant: run.variant,
      seed: run.seed,
      specHash,
      valLoss: finalEval.loss,
      valBpb: finalEval.bpb,
      valTokens: finalEval.tokens,
      lengths,
      trainLoss: lastLoss,
      params: model.counts,
      flopsPerToken: model.flops,
      tokenizer: data.tokenizer.name,
      tokenizerHash: data.tokenizer.hash,
      tokenBudget: steps * t.batch * t.accumulate * run.model.context,
      tokensTrained: tokensSeen,
      steps,
      wallSeconds,
      trainSeconds,
      tokensPerSecond: tokensSeen / Math.max(trainSeconds, 1e-9),
      ...(stepPeakBytes === undefined ? {} : { stepPeakBytes }),
      backend: options.backend.name,
      backendDetail: options.backend.detail,
      sample,
    }
    yield* writeJson("summary.json", summary)
    return summary
  })
