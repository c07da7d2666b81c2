import * as tf from "@tensorflow/tfjs"
import type { Model } from "../src/model/index.js"
import { Rng } from "../src/random/rng.js"
import { AdamW } from "../src/optimizer/adamw.js"
import { variableGrads } from "../src/backend/gradients.js"

/**
 * One AdamW training step of a model on seeded random tokens, as the benchmarks time it;
 * returns the step's loss. `dispose` frees the parameters and optimiser state.
 */
export const trainingSteps = (model: Model, batch: number, seed = 1) => {
  const { vocab, context } = model.spec
  const params = model.init(seed) as Record<string, tf.Variable>
  const optimizer = new AdamW(params, {
    beta1: 0.9,
    beta2: 0.95,
    eps: 1e-8,
    weightDecay: 0.1,
    decay: (name) => model.table.find((p) => p.name === name)?.decl.decay ?? false,
  })
  const paramOf = new Map(Object.entries(params).map(([name, v]) => [v.name, name]))
  const rng = Rng.derive(seed, "bench-train")
  const tokens = new Int32Array(batch * (context + 1))
  const step = (): number => {
    for (let i = 0; i < tokens.length; i++) tokens[i] = rng.nextInt(vocab)
    const data = {
      tokens: tf.tensor2d(tokens, [batch, context + 1], "int32"),
      mask: tf.ones([batch, context]) as tf.Tensor2D,
    }
    const { value, grads } = variableGrads(() => model.loss(params, data, { training: true }))
    const loss = value.dataSync()[0]!
    // variableGrads keys by tf variable name; the optimiser by parameter name.
    optimizer.update(Object.fromEntries(Object.entries(grads).map(([v, g]) => [paramOf.get(v) ?? v, g])), 1e-3)
    tf.dispose([value, data.tokens, data.mask, ...Object.values(grads)])
    return loss
  }
  const dispose = () => {
    optimizer.dispose()
    tf.dispose(Object.values(params))
  }
  return { step, dispose }
}
