import * as tf from "@tensorflow/tfjs"
import type { Model } from "../src/model/index.js"
import { Rng } from "../src/random/rng.js"
import { variableGrads } from "../src/backend/gradients.js"
import { adamw, muon, type OptimizerConfig } from "../src/experiment/optimizer/spec.js"
import { makeOptimizer } from "../src/optimizer/optimizer.js"
import { constant, lrAt } from "../src/schedule/index.js"

/** The optimisers the training benchmarks time: AdamW (β2 0.95, decay 0.1) and Muon with that AdamW for the rest. */
export const benchOptimizers = {
  adamw: adamw({ lr: constant(1e-3) }),
  muon: muon({ lr: constant(0.02), adamw: { lr: constant(1e-3) } }),
} as const satisfies Record<string, OptimizerConfig>

export type BenchOptimizer = keyof typeof benchOptimizers

/**
 * One training step of a model on seeded random tokens, as the benchmarks time it;
 * returns the step's loss. `dispose` frees the parameters and optimiser state.
 */
export const trainingSteps = (model: Model, batch: number, seed = 1, optimizer: BenchOptimizer = "adamw") => {
  const { vocab, context } = model.spec
  const params = model.init(seed) as Record<string, tf.Variable>
  const config = benchOptimizers[optimizer]
  // Constant rates: the run's length only feeds schedules.
  const opt = makeOptimizer(config, params, model.table, 1)
  const lr = lrAt(config.lr, 1, 1)
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
    opt.update(Object.fromEntries(Object.entries(grads).map(([v, g]) => [paramOf.get(v) ?? v, g])), lr)
    tf.dispose([value, data.tokens, data.mask, ...Object.values(grads)])
    return loss
  }
  const dispose = () => {
    opt.dispose()
    tf.dispose(Object.values(params))
  }
  return { step, dispose }
}
