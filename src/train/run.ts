import * as tf from "@tensorflow/tfjs"
import { Console, Data, Effect, FileSystem, Option, Path, Scope } from "effect"
import { hashSpec } from "../../dsl/hash.js"
import { posencModule } from "../../dsl/kinds/posenc/index.js"
import { dimsOf } from "../../dsl/nodes.js"
import { peakMeter } from "../backend/peak-memory.js"
import { DepthTrace, type TraceTotals } from "../depth/trace.js"
import type { BackendChoice } from "../backend/select.js"
import { evaluate, type Evaluation, type HostBatch } from "../eval/evaluate.js"
import { generate } from "../eval/generate.js"
import { type RunSpec, totalSteps } from "../experiment/define.js"
import type { Summary } from "../experiment/summary.js"
import { availableMemory } from "../backend/available-memory.js"
import { ioReason } from "../errors/io-error.js"
import { located } from "../errors/unexpected.js"
import { writeFileAtomic } from "../io/atomic-write.js"
import { droppedLines, openJsonl, parseJsonl } from "../io/jsonl.js"
import { makeDirectory } from "../io/make-directory.js"
import { type LockError, lockRunDir } from "../io/run-lock.js"
import { compile } from "../model/compile.js"
import type { Params } from "../model/init.js"
import type { NamedParam } from "../../dsl/params.js"
import { trainingObjective } from "../objective/objective.js"
import { Rng } from "../random/rng.js"
import { progressBar, type ProgressSink } from "../io/progress.js"
import { makeOptimizer } from "../optimizer/optimizer.js"
import { clipByGlobalNorm, GradientAccumulator } from "../optimizer/adamw.js"
import { type CheckpointError, loadCheckpoint, saveCheckpoint, type TensorArrays } from "./checkpoint.js"
import type { RunData } from "./run-data.js"
import { type LedgerOptions, machineName, recordFinishedRun } from "./ledger.js"
import { estimateTraining, type MemoryLimit, memoryProblem } from "./estimate.js"
import { lrAt } from "../schedule/index.js"
import { trainingIdentity } from "./identity.js"
import { inspectTarget } from "./target.js"
import { prepareSources, warmStartArrays } from "./sources.js"
import type { RunStart } from "./start.js"

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
  /** Where to record the finished run (absent: not recorded, as in tests of the loop itself). */
  readonly ledger?: LedgerOptions
  /** Refuse a run whose memory estimate exceeds this (default: the memory available now). */
  readonly memoryLimit?: MemoryLimit
  /** Start from given weights (with masks) instead of the seeded initialisation: a pruned run. */
  readonly start?: RunStart
}

/** Why this machine cannot train the run, from its spec's memory estimate; undefined when it fits. */
export const runMemoryProblem = (run: RunSpec, limit: MemoryLimit = availableMemory()): string | undefined =>
  memoryProblem(estimateTraining(run.model, { ...run.training, evalLengths: longerLengths(run) }), { ...run.training, context: run.model.context }, limit)

/** The longer sequence lengths a run evaluates after training: those its position scheme can represent. */
export const longerLengths = (run: RunSpec): ReadonlyArray<number> => {
  const maxLength = posencModule(run.model.posenc).maxLength?.(run.model.posenc, dimsOf(run.model))
  return (run.training.eval.lengths ?? []).filter((l) => maxLength === undefined || l <= maxLength)
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
export const dropoutSeed = (seed: number, step: number, micro: number): number => (Rng.derive(seed, `dropout/${step}/${micro}`).nextUint32() >>> 1)

interface StepResult {
  readonly loss: number
  readonly gradNorm: number
  readonly tokens: number
}

const toTensors = (b: HostBatch) => ({
  tokens: tf.tensor2d(b.tokens, [b.batch, b.context + 1], "int32"),
  mask: tf.tensor2d(b.mask, [b.batch, b.context], "float32"),
})

/** A finished run's ledger record, written unless the ledger has it (it may have failed to write before). */
const record = (run: RunSpec, summary: Summary, data: RunData, options: RunOptions) =>
  options.ledger === undefined
    ? Effect.succeed(false)
    : recordFinishedRun(run, summary, { dir: options.out, dataHash: data.dataHash, ledger: options.ledger }).pipe(
        Effect.mapError(
          (e) => new RunError({ problem: `${options.out} finished (summary.json is written), but its ledger record could not be written: ${e.message}\nRun the same command again to record it: ${options.resumeCommand}` }),
        ),
      )

/** A finished run's summary as it stands: running it again trains and writes nothing but a missing ledger record. */
const finishedRun = (run: RunSpec, data: RunData, options: RunOptions) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const dir = options.out
    const file = path.join(dir, "summary.json")
    const text = yield* fs.readFileString(file).pipe(Effect.mapError((e) => new RunError({ problem: `cannot read ${file}: ${ioReason(e)}` })))
    const summary = yield* Effect.try({ try: () => JSON.parse(text) as Summary, catch: (e) => new RunError({ problem: `${file}: not valid JSON (${(e as Error).message})` }) })
    if (typeof summary?.valLoss !== "number" || typeof summary.valBpb !== "number") return yield* new RunError({ problem: `${file}: expected a finished run's summary (valLoss and valBpb numbers)` })
    yield* Console.error(`${dir}: already finished; nothing to train (its summary.json is kept)`)
    if (yield* record(run, summary, data, options)) yield* Console.error(`${dir}: the ledger had no record of this finished run; added it`)
    return summary
  })

export const trainRun = (
  requested: RunSpec,
  data: RunData,
  options: RunOptions,
): Effect.Effect<Summary, RunError | CheckpointError | LockError, FileSystem.FileSystem | Path.Path | ProgressSink | Scope.Scope> =>
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
    // Every check that can fail happens before anything is written: the sizes fit this machine,
    // the directory is writable and no other process trains into it.
    const memory = runMemoryProblem(run, options.memoryLimit)
    if (memory !== undefined) return yield* fail(`${dir}: ${memory}`)
    const before = yield* inspectTarget(dir, run, options.fresh)
    if (before.kind === "refused") return yield* fail(before.problem)
    yield* makeDirectory(dir).pipe(Effect.mapError((e) => fail(`cannot write to the output directory ${dir}: ${ioReason(e)}`)))
    yield* lockRunDir(dir, (message) => Console.error(message))
    // Again under the lock, which also keeps a finished run's missing ledger record from being added twice.
    const target = yield* inspectTarget(dir, run, options.fresh)
    if (target.kind === "refused") return yield* fail(target.problem)
    if (target.kind === "finished") return yield* finishedRun(run, data, options)
    const existing = target.kind === "resume" ? yield* loadCheckpoint(dir) : Option.none()

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
    const start = options.start
    const objective = yield* Effect.acquireRelease(
      Effect.sync(() => trainingObjective(run, model, sources.objective)),
      (o) => Effect.sync(() => o.dispose()),
    )
    // The objective's own tensors (hidden-state projections) train and checkpoint with the model's.
    const trainable: Params = { ...params, ...objective.params }
    const table = [...model.table, ...objective.table]
    const optimizer = yield* Effect.acquireRelease(
      Effect.sync(() => makeOptimizer(t.optimizer, trainable as Record<string, tf.Variable>, (name) => table.find((p) => p.name === name)!.decl.decay)),
      (o) => Effect.sync(() => o.dispose()),
    )

    let step = 0
    let tokensSeen = 0
    let elapsedBefore = 0
    // Time spent in optimiser steps only, so throughput is not diluted by evaluation and sampling.
    let trainSeconds = 0
    let stepPeakBytes: number | undefined = undefined
    let cursor: unknown = undefined
    let traced: TraceTotals | undefined = undefined
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
      const extra = ck.state.extra as { elapsedSeconds?: number; trainSeconds?: number; stepPeakBytes?: number; trained?: TraceTotals } | undefined
      elapsedBefore = extra?.elapsedSeconds ?? 0
      traced = extra?.trained
      trainSeconds = extra?.trainSeconds ?? 0
      stepPeakBytes = extra?.stepPeakBytes
      if (start?.masks !== undefined) {
        const problem = ck.masks === undefined ? "has no masks.safetensors, which a pruned run needs" : start.masks.restore(ck.masks)
        if (problem !== undefined) return yield* fail(`${path.join(dir, "checkpoint")}: ${problem}`)
      }
      if (step > steps) return yield* fail(`${dir}: the checkpoint is at step ${step}, past this run's ${steps} steps`)
    } else if (start !== undefined) {
      const problem = restoreParams(model.table, params, start.params, "the starting weights")
      if (problem !== undefined) return yield* fail(problem)
    } else if (sources.warmStart) {
      const problem = restoreParams(model.table, params, warmStartArrays(model.table, sources.warmStart.params, run.init?.blocks), sources.warmStart.dir)
      if (problem !== undefined) return yield* fail(problem)
    }
    const stream = yield* Effect.try({
      try: () => data.trainStream(t.batch, run.model.context, run.seed, cursor),
      catch: (e) => fail(`cannot restore the data cursor: ${(e as Error).message}`),
    })

    // metrics.jsonl keeps the rows up to the checkpoint's step, so a resumed run continues it
    // seamlessly; rows torn by a failed write are dropped with a warning.
    const metricsPath = path.join(dir, "metrics.jsonl")
    const previous = step === 0 ? undefined : yield* fs.readFileString(metricsPath).pipe(Effect.map(parseJsonl), Effect.orElseSucceed(() => undefined))
    if (previous !== undefined && previous.dropped.length > 0) yield* Console.error(droppedLines(metricsPath, previous))
    const oldRows = (previous?.lines ?? []).filter((l) => ((l.value as { step?: unknown } | null)?.step as number) <= step).map((l) => l.text)
    yield* writeFileAtomic(metricsPath, oldRows.map((r) => r + "\n").join("")).pipe(Effect.mapError((e) => fail(e.message)))
    const metrics = yield* openJsonl(metricsPath).pipe(Effect.mapError((e) => fail(e.message)))
    const appendMetric = (row: Record<string, unknown>) => metrics.append(row).pipe(Effect.mapError((e) => fail(e.message)))

    // The cursor and compute counts as of the last whole step: a failure mid-step may have gone past them.
    let cursorAfterStep = stream.cursor()
    const trained = DepthTrace.resume(traced)
    let tracedAfterStep = trained.totals()
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
          // What it was trained from, so a refused resume can say what differs (see checkpointChanges).
          extra: { identity: trainingIdentity(run), elapsedSeconds: elapsed(), trainSeconds, ...(stepPeakBytes === undefined ? {} : { stepPeakBytes }), trained: tracedAfterStep },
        },
        ...(start?.masks === undefined ? {} : { masks: start.masks.save() }),
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
          return tf.variableGrads(() => objective.loss(params, batch, guide, { training: true, dropoutSeed: dropoutSeed(run.seed, step + 1, micro), trace: trained }))
        })
        lossSum += value.dataSync()[0]!
        // tfjs keys gradients by its global variable names; the optimiser wants parameter names.
        const named: Record<string, tf.Tensor> = Object.fromEntries(Object.entries(grads).map(([varName, g]) => [paramOfVariable.get(varName)!, g]))
        // A block LayerDrop skipped has no gradient in this micro-batch: zero.
        const zeros = model.table.filter((p) => named[p.name] === undefined).map((p) => (named[p.name] = tf.zerosLike(params[p.name]!)))
        accumulator.add(named)
        tf.dispose([value, ...Object.values(grads), ...zeros])
      }
      const mean = accumulator.mean()
      accumulator.reset()
      const loss = lossSum / t.accumulate
      const clipped = t.optimizer.clip > 0 ? clipByGlobalNorm(mean, t.optimizer.clip) : { grads: mean, norm: Number.NaN }
      const gradNorm = t.optimizer.clip > 0 ? clipped.norm : tf.tidy(() => tf.sqrt(tf.addN(Object.values(mean).map((g) => tf.sum(tf.square(g))))).dataSync()[0]!)
      // A non-finite loss or gradient leaves the parameters untouched: the run stops at the last good state.
      if (Number.isFinite(loss) && Number.isFinite(gradNorm)) {
        optimizer.update(clipped.grads, lrAt(t.optimizer.lr, step + 1, steps))
        start?.masks?.apply(params, step + 1)
      }
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
      const r = yield* Effect.sync(trainStep).pipe(located({ step: step + 1 }))
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
      tracedAfterStep = trained.totals()
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

    // A run of no steps (a one-shot pruned model) still leaves a checkpoint to evaluate and sample.
    if (savedStep !== step) yield* save
    const finalEval = lastEval ?? runEval()
    // Longer sequences than trained on, where the position scheme can represent them.
    const lengths: Record<string, { loss: number; bpb: number }> = {}
    for (const length of longerLengths(run)) {
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
      spent: {
        training: { flopsPerToken: 3 * trained.flopsPerToken, blocksPerToken: trained.blocksPerToken },
        eval: { flopsPerToken: finalEval.flopsPerToken, blocksPerToken: finalEval.blocksPerToken },
      },
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
      machine: machineName(),
      finishedAt: new Date().toISOString(),
      sample,
      ...start?.summary?.(params),
    }
    yield* writeJson("summary.json", summary)
    yield* record(run, summary, data, options)
    return summary
  }).pipe(located({ runDir: options.out }))
