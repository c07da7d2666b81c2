import * as tf from "@tensorflow/tfjs"
import { Console, Effect, Path } from "effect"
import { variableGrads } from "../backend/gradients.js"
import { peakMeter } from "../backend/peak-memory.js"
import { located } from "../errors/unexpected.js"
import { evaluate, type Evaluation, type HostBatch } from "../eval/evaluate.js"
import { evalLabel, evalTextOf } from "../experiment/define.js"
import { Rng } from "../random/rng.js"
import { progressBar } from "../io/progress.js"
import { lrAt } from "../schedule/index.js"
import { clipByGlobalNorm, GradientAccumulator } from "../optimizer/adamw.js"
import type { CheckpointError } from "./checkpoint.js"
import type { RunData } from "./run-data.js"
import { RunError, type RunOptions } from "./run-options.js"
import type { Session } from "./session.js"

/**
 * The third phase of a run: optimiser steps until the budget is spent or its target reached,
 * with periodic evaluation, metrics and checkpoints. Interruption (Ctrl-C, SIGTERM) lands between steps and
 * saves a checkpoint at the last completed one; a non-finite loss stops the run before its
 * update and keeps the last good checkpoint.
 */
export interface Trained {
  /** The last step's training loss (NaN when this session trained no step). */
  readonly lastLoss: number
  /** The last periodic evaluation, when the final step had one. */
  readonly lastEval: Evaluation | undefined
  readonly tokensThisSession: number
  /** Prints a line above the progress bar. */
  readonly log: (line: string) => Effect.Effect<void>
}

interface StepResult {
  readonly loss: number
  readonly gradNorm: number
  readonly tokens: number
}

/** Per-step dropout seed: a pure function of run seed and step, so resumes draw identical masks. */
export const dropoutSeed = (seed: number, step: number, micro: number): number => Rng.derive(seed, `dropout/${step}/${micro}`).nextUint32() >>> 1

const toTensors = (b: HostBatch) => ({
  tokens: tf.tensor2d(b.tokens, [b.batch, b.context + 1], "int32"),
  mask: tf.tensor2d(b.mask, [b.batch, b.context], "float32"),
})

/** One optimiser step over `accumulate` micro-batches: the objective's loss, its gradients averaged and clipped, the update, then the parts' hooks. */
const optimiserStep = (s: Session, accumulator: GradientAccumulator, paramOfVariable: ReadonlyMap<string, string>): StepResult => {
  const t = s.run.training
  const step = s.at.step
  let lossSum = 0
  let tokens = 0
  for (let micro = 0; micro < t.accumulate; micro++) {
    const hb = s.stream.next()
    tokens += hb.mask.reduce((sum, w) => sum + w, 0)
    const { value, grads } = tf.tidy(() => {
      const batch = toTensors(hb)
      const guide = s.objective.guide(batch)
      return variableGrads(() => s.objective.loss(s.params, batch, guide, { training: true, dropoutSeed: dropoutSeed(s.run.seed, step + 1, micro), trace: s.trace }))
    })
    lossSum += value.dataSync()[0]!
    const named: Record<string, tf.Tensor> = Object.fromEntries(Object.entries(grads).map(([varName, g]) => [paramOfVariable.get(varName)!, g]))
    // A block LayerDrop skipped has no gradient in this micro-batch: zero.
    const zeros = s.model.table.filter((p) => named[p.name] === undefined).map((p) => (named[p.name] = tf.zerosLike(s.params[p.name]!)))
    accumulator.add(named)
    tf.dispose([value, ...Object.values(grads), ...zeros])
  }
  const mean = accumulator.mean()
  accumulator.reset()
  const loss = lossSum / t.accumulate
  const clip = t.optimizer.clip
  const clipped = clip > 0 ? clipByGlobalNorm(mean, clip) : { grads: mean, norm: Number.NaN }
  const gradNorm = clip > 0 ? clipped.norm : tf.tidy(() => tf.sqrt(tf.addN(Object.values(mean).map((g) => tf.sum(tf.square(g))))).dataSync()[0]!)
  // A non-finite loss or gradient leaves the parameters untouched: the run stops at the last good state.
  if (Number.isFinite(loss) && Number.isFinite(gradNorm)) {
    s.optimizer.update(clipped.grads, lrAt(t.optimizer.lr, step + 1, s.steps))
    s.masks?.apply(s.params, step + 1)
  }
  tf.dispose(Object.values(mean))
  if (clipped.grads !== mean) tf.dispose(Object.values(clipped.grads))
  return { loss, gradNorm, tokens }
}

/** The run's validation figures now. */
export const evaluateNow = (s: Session, data: RunData): Evaluation =>
  evaluate(s.model, s.params, data.validBatches(s.run.training.batch, s.run.model.context, s.run.training.eval.tokens), data.bytesPerToken.valid)

export const trainSteps = (s: Session, data: RunData, options: RunOptions) =>
  Effect.gen(function* () {
    const path = yield* Path.Path
    const t = s.run.training
    const at = s.at
    const checkpointDir = path.join(s.dir, "checkpoint")
    let healthy = true
    // tfjs keys gradients by its global variable names; the optimiser wants parameter names.
    const paramOfVariable = new Map(Object.entries(s.trainable).map(([name, v]) => [v.name, name]))
    const accumulator = new GradientAccumulator()
    yield* Effect.addFinalizer(() => Effect.sync(() => accumulator.reset()))
    yield* Effect.addFinalizer((exit) =>
      exit._tag === "Failure" && healthy && at.step > at.savedStep && at.step > 0
        ? s.save.pipe(
            Effect.andThen(Console.error(`\nStopped at step ${at.step}/${s.steps}; checkpoint saved in ${checkpointDir}.\nResume with: ${options.resumeCommand}`)),
            Effect.catch((e: CheckpointError) => Console.error(`\nStopped at step ${at.step}, but saving the checkpoint failed: ${e.message}`)),
          )
        : Effect.void,
    )

    const bar = yield* progressBar({ label: `${s.run.experiment}/${s.run.variant}/seed${s.run.seed}`, total: s.steps, start: at.step, unit: "step" })
    let tokensThisSession = 0
    let lastLoss = Number.NaN
    let lastEval: Evaluation | undefined
    const meter = peakMeter()
    const target = t.budget.bpb
    const label = evalLabel(t.data)
    while (at.step < s.steps && at.reached === undefined) {
      const stepStart = performance.now()
      meter?.start()
      const r = yield* Effect.sync(() => optimiserStep(s, accumulator, paramOfVariable)).pipe(located({ step: at.step + 1 }))
      if (meter && tokensThisSession > 0) at.stepPeakBytes = Math.max(at.stepPeakBytes ?? 0, meter.peakAbove())
      if (!Number.isFinite(r.loss) || !Number.isFinite(r.gradNorm)) {
        healthy = false
        return yield* new RunError({
          problem:
            `the loss became ${r.loss} (gradient norm ${r.gradNorm}) at step ${at.step + 1}; the run stopped. ` +
            (at.savedStep >= 0 ? `The last good checkpoint (step ${at.savedStep}) is kept in ${checkpointDir}.` : "No checkpoint had been written yet.") +
            " Try a lower learning rate or stronger clipping.",
        })
      }
      at.trainSeconds += (performance.now() - stepStart) / 1000
      at.step += 1
      at.cursor = s.stream.cursor()
      at.traced = s.trace.totals()
      at.tokensSeen += r.tokens
      tokensThisSession += r.tokens
      lastLoss = r.loss
      const row: Record<string, unknown> = {
        step: at.step,
        tokens: at.tokensSeen,
        loss: r.loss,
        lr: lrAt(t.optimizer.lr, at.step, s.steps),
        gradNorm: r.gradNorm,
        tokensPerSecond: r.tokens / ((performance.now() - stepStart) / 1000),
        // Live tensors after the step: flat over a healthy run, growing if something leaks.
        tensors: tf.memory().numTensors,
      }
      if (at.step % t.eval.every === 0 || at.step === s.steps) {
        lastEval = evaluateNow(s, data)
        // Figures on held-out training stories say so, so that no reader takes them for valid.txt's.
        Object.assign(row, { valLoss: lastEval.loss, valBpb: lastEval.bpb, valTokens: lastEval.tokens }, t.data.tune === undefined ? {} : { evalText: evalTextOf(t.data) })
        yield* bar.log(`step ${at.step}: train loss ${r.loss.toFixed(4)}, ${label} loss ${lastEval.loss.toFixed(4)}, ${label} bpb ${lastEval.bpb.toFixed(4)}`)
        if (target !== undefined && lastEval.bpb <= target) {
          at.reached = { step: at.step, valBpb: lastEval.bpb, tokens: at.tokensSeen, trainSeconds: at.trainSeconds, trainingFlops: 3 * s.trace.flops, optimizerFlops: at.step * s.optimizerFlops }
          yield* bar.log(`reached ${label} bpb ${target} at step ${at.step}: ${at.tokensSeen} tokens, ${at.trainSeconds.toFixed(1)} s of training; training stops here`)
        }
      }
      yield* s.appendMetric(row)
      yield* bar.update({ current: at.step, loss: r.loss, tokens: tokensThisSession })
      if (at.step % t.checkpoint.every === 0 || at.step === s.steps || at.reached !== undefined) yield* s.save
      // Interruption lands here, between steps, so a saved state is always a whole step.
      yield* Effect.yieldNow
    }
    return { lastLoss, lastEval, tokensThisSession, log: bar.log } satisfies Trained
  })
