import * as tf from "@tensorflow/tfjs"
import type { NamedParam } from "../../dsl/params.js"
import type { RunSpec } from "../experiment/define.js"
import { type Batch, compile, type ForwardOptions, type Model, type ParamValues } from "../model/compile.js"
import { initParams } from "../model/init.js"
import { Rng } from "../random/rng.js"
import type { SourceRun } from "../train/sources.js"
import { distillationLoss } from "./distill-loss.js"
import { hiddenMatchLoss } from "./hidden.js"

/**
 * A run's objective as the training step uses it. `guide` computes what the loss needs
 * besides the batch outside the gradient tape: the teacher's forward pass, whose
 * intermediates are freed as soon as its logits (and chosen block outputs) exist, and which
 * no gradient reaches (the teacher's weights are plain tensors, not variables). `params` are
 * the objective's own trainable tensors (hidden-state projections): trained, saved in the
 * checkpoint next to the model's, but not part of the model.
 */
export interface Guide {
  readonly logits: tf.Tensor2D
  /** The teacher block outputs of the hidden-state pairs, in pair order. */
  readonly hidden: ReadonlyArray<tf.Tensor3D>
}

export interface TrainingObjective {
  readonly params: Readonly<Record<string, tf.Variable>>
  readonly table: ReadonlyArray<NamedParam>
  readonly guide: (batch: Batch) => Guide | undefined
  readonly loss: (params: ParamValues, batch: Batch, guide: Guide | undefined, options: ForwardOptions) => tf.Scalar
  readonly dispose: () => void
}

const inputsOf = (batch: Batch): tf.Tensor2D => {
  const [b, t1] = batch.tokens.shape
  return tf.slice(batch.tokens, [0, 0], [b, t1 - 1])
}

/** Parameter-name prefix of the objective's own tensors. */
export const OBJECTIVE_PREFIX = "objective."

export const trainingObjective = (run: RunSpec, model: Model, teacher: SourceRun | undefined): TrainingObjective => {
  const o = run.objective
  if (o === undefined || o.kind === "cross-entropy") {
    return { params: {}, table: [], guide: () => undefined, loss: (params, batch, _guide, options) => model.loss(params, batch, options), dispose: () => {} }
  }
  if (teacher === undefined) throw new Error("distillation needs its teacher run")
  const teacherModel = compile(teacher.run.model)
  const teacherParams = Object.fromEntries(teacherModel.table.map((p) => [p.name, tf.tensor(teacher.params[p.name]!.data, [...p.decl.shape], "float32")]))
  const pairs = o.hidden?.pairs ?? []
  const studentWanted = new Set(pairs.map(([s]) => s))
  const teacherWanted = new Set(pairs.map(([, t]) => t))
  const [ds, dt] = [run.model.width, teacher.run.model.width]
  const table: NamedParam[] =
    ds === dt ? [] : pairs.map((_, k) => ({ name: `${OBJECTIVE_PREFIX}hidden.${k}.projection`, decl: { shape: [ds, dt], init: { kind: "normal", std: 1 / Math.sqrt(ds) }, decay: true } }))
  const params = initParams(table, Rng.derive(run.seed, "objective").nextUint32() >>> 1)
  const projection = (k: number) => (table.length === 0 ? undefined : (params[table[k]!.name] as tf.Tensor2D))

  const collect = (wanted: ReadonlySet<number>, into: Map<number, tf.Tensor3D>) =>
    wanted.size === 0 ? {} : { blockOutputs: (i: number, x: tf.Tensor3D) => (wanted.has(i) ? void into.set(i, x) : undefined) }

  return {
    params,
    table,
    guide: (batch) =>
      tf.tidy(() => {
        const outputs = new Map<number, tf.Tensor3D>()
        const logits = teacherModel.apply(teacherParams, inputsOf(batch), { blockwise: true, ...collect(teacherWanted, outputs) })
        return { logits: logits.reshape([-1, teacherModel.spec.vocab]) as tf.Tensor2D, hidden: pairs.map(([, t]) => outputs.get(t)!) }
      }),
    loss: (params, batch, guide, options) => {
      const outputs = new Map<number, tf.Tensor3D>()
      const soft = { teacher: guide!.logits, temperature: o.temperature, alpha: o.alpha, divergence: o.divergence }
      // Through the model's loss, so a depth policy's exits and auxiliary loss are trained as under cross-entropy.
      const kd = model.loss(params, batch, { ...options, ...collect(studentWanted, outputs) }, (logits, targets, weights) => distillationLoss(logits, targets, weights, soft))
      if (!o.hidden) return kd
      const weights = batch.mask.reshape([-1]) as tf.Tensor1D
      const h = o.hidden
      const terms = pairs.map(([s], k) => hiddenMatchLoss(outputs.get(s)!, guide!.hidden[k]!, projection(k), weights, h.loss))
      return tf.add(kd, tf.mul(tf.addN(terms), h.weight)) as tf.Scalar
    },
    dispose: () => tf.dispose([...Object.values(teacherParams), ...Object.values(params)]),
  }
}
