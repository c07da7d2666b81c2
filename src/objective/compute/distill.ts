import * as tf from "@tensorflow/tfjs"
import type { NamedParam } from "../../../dsl/params.js"
import { compile } from "../../model/compile.js"
import { initParams } from "../../model/init.js"
import { Rng } from "../../random/rng.js"
import { distillationLoss } from "../distill-loss.js"
import { hiddenMatchLoss } from "../hidden.js"
import { withZLoss } from "../z-loss.js"
import type { Distill } from "../../experiment/objective/kinds/distill.js"
import { inputsOf, type ObjectiveCompute, OBJECTIVE_PREFIX } from "./compute.js"

/**
 * Distillation: the teacher's forward pass is the guide (outside the tape; its weights are
 * plain tensors), the loss goes through the student's `Model.loss`, so a depth policy's exits
 * and auxiliary loss train as under cross-entropy; hidden-state pairs add projected matching terms.
 */
export const distill: ObjectiveCompute<Distill> = (o, { run, model, sources: [teacher] }) => {
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
      const term = withZLoss((logits, targets, weights) => distillationLoss(logits, targets, weights, soft), o.zLoss)
      // Through the model's loss, so a depth policy's exits and auxiliary loss are trained as under cross-entropy.
      const kd = model.loss(params, batch, { ...options, ...collect(studentWanted, outputs) }, term)
      if (!o.hidden) return kd
      const weights = batch.mask.reshape([-1]) as tf.Tensor1D
      const h = o.hidden
      const terms = pairs.map(([s], k) => hiddenMatchLoss(outputs.get(s)!, guide!.hidden[k]!, projection(k), weights, h.loss))
      return tf.add(kd, tf.mul(tf.addN(terms), h.weight)) as tf.Scalar
    },
    dispose: () => tf.dispose([...Object.values(teacherParams), ...Object.values(params)]),
  }
}
