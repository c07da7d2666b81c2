import * as tf from "@tensorflow/tfjs"
import { Console, Effect, FileSystem, Option, Path } from "effect"
import type { NamedParam } from "../../dsl/params.js"
import { DepthTrace, type TraceTotals } from "../depth/trace.js"
import { totalSteps, type RunSpec } from "../experiment/define.js"
import { optimizerUpdateFlops } from "../experiment/optimizer/spec.js"
import type { Reached } from "../experiment/summary.js"
import { writeFileAtomic } from "../io/atomic-write.js"
import { droppedLines, openJsonl, parseJsonl } from "../io/jsonl.js"
import { compile, type Model } from "../model/compile.js"
import type { Params } from "../model/init.js"
import type { TrainingObjective } from "../objective/compute/compute.js"
import { trainingObjective } from "../objective/objective.js"
import type { Optimizer } from "../optimizer/compute/compute.js"
import { makeOptimizer } from "../optimizer/optimizer.js"
import { type Checkpoint, saveCheckpoint, type TensorArrays } from "./checkpoint.js"
import { trainingIdentity } from "./identity.js"
import type { Opened } from "./open.js"
import type { RunData, TrainStream } from "./run-data.js"
import { RunError, type RunOptions } from "./run-options.js"
import { warmStartArrays } from "./warm-starts.js"
import { runPrecision } from "./precision.js"
import type { WeightMasks } from "./start.js"

/**
 * The second phase of a run: the model and the parts it trains with (its objective's own
 * tensors, its optimiser, a pruned start's masks), initialised, then restored from the
 * checkpoint or started from the weights its start or warm start gives; its data stream at
 * the checkpoint's cursor, and metrics.jsonl cut back to the checkpoint's step.
 */
export interface Session {
  readonly run: RunSpec
  readonly dir: string
  readonly specHash: string
  readonly steps: number
  readonly model: Model
  readonly params: Params
  /** What the optimiser trains and a checkpoint holds: the model's tensors and the objective's own. */
  readonly trainable: Params
  readonly objective: TrainingObjective
  readonly optimizer: Optimizer
  /** FLOPs of one of its updates beyond the model's passes (Muon's Newton–Schulz products). */
  readonly optimizerFlops: number
  readonly masks?: WeightMasks
  readonly stream: TrainStream
  /** The blocks and FLOPs spent in training so far (a depth policy spends less than the nominal). */
  readonly trace: DepthTrace
  readonly at: Position
  /** Saves a checkpoint of the run as of its last whole step. */
  readonly save: ReturnType<typeof saveAt>
  readonly appendMetric: (row: Record<string, unknown>) => Effect.Effect<void, RunError>
  readonly elapsed: () => number
  /** TFJS_NATIVE_BF16=auto's choice of matmul precision and why; absent otherwise. */
  readonly precision?: string
}

/** Where a run stands: what a checkpoint saves besides the tensors, as of the last whole step. */
export interface Position {
  step: number
  tokensSeen: number
  /** Seconds spent in optimiser steps only, so throughput is not diluted by evaluation and sampling. */
  trainSeconds: number
  stepPeakBytes: number | undefined
  /** The data cursor and compute counts after the last whole step: a failure mid-step may have gone past them. */
  cursor: unknown
  traced: TraceTotals | undefined
  /** The step of the checkpoint on disk (-1: none yet). */
  savedStep: number
  /** Where the budget's target was reached (training stops there). */
  reached: Reached | undefined
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

const saveAt = (s: Omit<Session, "save" | "appendMetric">) =>
  Effect.suspend(() =>
    saveCheckpoint(s.dir, {
      params: toArrays(s.trainable),
      optimizer: s.optimizer.exportState().moments,
      state: {
        step: s.at.step,
        tokensSeen: s.at.tokensSeen,
        specHash: s.specHash,
        dataCursor: s.at.cursor,
        // Dropout masks derive from (seed, step); the data order lives in the cursor.
        rng: { seed: s.run.seed, dropout: "derived from seed and step" },
        optimizer: { step: s.optimizer.step, ...s.run.training.optimizer },
        // What it was trained from, so a refused resume can say what differs (src/train/target.ts).
        extra: {
          identity: trainingIdentity(s.run),
          elapsedSeconds: s.elapsed(),
          trainSeconds: s.at.trainSeconds,
          ...(s.at.stepPeakBytes === undefined ? {} : { stepPeakBytes: s.at.stepPeakBytes }),
          trained: s.at.traced,
          ...(s.at.reached === undefined ? {} : { reached: s.at.reached }),
        },
      },
      ...(s.masks === undefined ? {} : { masks: s.masks.save() }),
    }).pipe(Effect.tap(() => Effect.sync(() => (s.at.savedStep = s.at.step)))),
  )

/** Where a run starts when it does not resume: a pruned start's weights, a warm start's, or none (the seeded initialisation). */
const startOf = (opened: Extract<Opened, { kind: "train" }>, model: Model, options: RunOptions): { arrays: TensorArrays; where: string } | undefined => {
  if (options.start !== undefined) return { arrays: options.start.params, where: "the starting weights" }
  const [warm, init] = [opened.sources.warmStart, opened.run.init]
  return warm === undefined || init === undefined ? undefined : { arrays: warmStartArrays(init, model.table, warm.params), where: warm.dir }
}

export const openSession = (opened: Extract<Opened, { kind: "train" }>, data: RunData, options: RunOptions) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const { run, specHash } = opened
    const dir = options.out
    const fail = (problem: string) => new RunError({ problem })
    const t = run.training
    const model = compile(run.model)
    const steps = totalSteps(run)
    yield* writeFileAtomic(path.join(dir, "spec.json"), JSON.stringify(run, null, 2) + "\n").pipe(Effect.mapError((e) => fail(e.message)))
    yield* writeFileAtomic(path.join(dir, "tokenizer.json"), data.tokenizer.json()).pipe(Effect.mapError((e) => fail(e.message)))

    const params = yield* Effect.acquireRelease(
      Effect.sync(() => model.init(run.seed)),
      (p) => Effect.sync(() => tf.dispose(Object.values(p))),
    )
    const objective = yield* Effect.acquireRelease(
      Effect.sync(() => trainingObjective(run, model, opened.sources.objective)),
      (o) => Effect.sync(() => o.dispose()),
    )
    // The objective's own tensors (hidden-state projections) train and checkpoint with the model's.
    const trainable: Params = { ...params, ...objective.params }
    const table = [...model.table, ...objective.table]
    const optimizer = yield* Effect.acquireRelease(
      Effect.sync(() => makeOptimizer(t.optimizer, trainable as Record<string, tf.Variable>, table, steps)),
      (o) => Effect.sync(() => o.dispose()),
    )
    const masks = options.start?.masks
    const at: Position = { step: 0, tokensSeen: 0, trainSeconds: 0, stepPeakBytes: undefined, cursor: undefined, traced: undefined, savedStep: -1, reached: undefined }
    let elapsedBefore = 0
    if (Option.isSome(opened.checkpoint)) {
      const ck: Checkpoint = opened.checkpoint.value
      const problem = restoreParams(table, trainable, ck.params, path.join(dir, "checkpoint", "model.safetensors"))
      if (problem !== undefined) return yield* fail(problem)
      yield* Effect.try({
        try: () => optimizer.importState({ step: ck.state.step, moments: ck.optimizer }),
        catch: (e) => fail(`${path.join(dir, "checkpoint", "optimizer.safetensors")}: ${(e as Error).message}`),
      })
      const extra = ck.state.extra as { elapsedSeconds?: number; trainSeconds?: number; stepPeakBytes?: number; trained?: TraceTotals; reached?: Reached } | undefined
      Object.assign(at, {
        step: ck.state.step,
        tokensSeen: ck.state.tokensSeen,
        cursor: ck.state.dataCursor,
        traced: extra?.trained,
        trainSeconds: extra?.trainSeconds ?? 0,
        stepPeakBytes: extra?.stepPeakBytes,
        savedStep: ck.state.step,
        reached: extra?.reached,
      })
      elapsedBefore = extra?.elapsedSeconds ?? 0
      if (masks !== undefined) {
        const problem = ck.masks === undefined ? "has no masks.safetensors, which a pruned run needs" : masks.restore(ck.masks)
        if (problem !== undefined) return yield* fail(`${path.join(dir, "checkpoint")}: ${problem}`)
      }
      if (at.step > steps) return yield* fail(`${dir}: the checkpoint is at step ${at.step}, past this run's ${steps} steps`)
    } else {
      const start = startOf(opened, model, options)
      const problem = start === undefined ? undefined : restoreParams(model.table, params, start.arrays, start.where)
      if (problem !== undefined) return yield* fail(problem)
    }
    const stream = yield* Effect.try({
      try: () => data.trainStream(t.batch, run.model.context, run.seed, at.cursor),
      catch: (e) => fail(`cannot restore the data cursor: ${(e as Error).message}`),
    })
    at.cursor = stream.cursor()
    const trace = DepthTrace.resume(at.traced)
    at.traced = trace.totals()

    // metrics.jsonl keeps the rows up to the checkpoint's step, so a resumed run continues it
    // seamlessly; rows torn by a failed write are dropped with a warning.
    const metricsPath = path.join(dir, "metrics.jsonl")
    const previous = at.step === 0 ? undefined : yield* fs.readFileString(metricsPath).pipe(Effect.map(parseJsonl), Effect.orElseSucceed(() => undefined))
    if (previous !== undefined && previous.dropped.length > 0) yield* Console.error(droppedLines(metricsPath, previous))
    const oldRows = (previous?.lines ?? []).filter((l) => ((l.value as { step?: unknown } | null)?.step as number) <= at.step).map((l) => l.text)
    yield* writeFileAtomic(metricsPath, oldRows.map((r) => r + "\n").join("")).pipe(Effect.mapError((e) => fail(e.message)))
    const metrics = yield* openJsonl(metricsPath).pipe(Effect.mapError((e) => fail(e.message)))

    const precision = yield* runPrecision(run.model, t.batch)
    const startedAt = performance.now()
    const elapsed = () => elapsedBefore + (performance.now() - startedAt) / 1000
    const parts = { run, dir, specHash, steps, model, params, trainable, objective, optimizer, optimizerFlops: optimizerUpdateFlops(t.optimizer, table), ...(masks === undefined ? {} : { masks }), stream, trace, at, elapsed, ...(precision === undefined ? {} : { precision }) }
    return {
      ...parts,
      save: saveAt(parts),
      appendMetric: (row: Record<string, unknown>) => metrics.append(row).pipe(Effect.mapError((e) => fail(e.message))),
    } satisfies Session
  })
