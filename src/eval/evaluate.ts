import * as tf from "@tensorflow/tfjs"
import type { Weights } from "../decode/weights.js"
import { DepthTrace } from "../depth/trace.js"
import { DecodeCache, type Model, type ParamValues } from "../model/compile.js"
import { bitsPerByte, crossEntropy } from "../model/loss.js"
import { drain } from "./stepwise.js"

/** A batch as the data layer produces it: rows of context+1 tokens and a target mask. */
export interface HostBatch {
  readonly batch: number
  readonly context: number
  /** batch × (context+1) token ids, row-major. */
  readonly tokens: Int32Array
  /** batch × context; 1 where the target counts, 0 for padding. */
  readonly mask: Float32Array
}

export interface Evaluation {
  /** Mean cross-entropy per target token, in nats. */
  readonly loss: number
  /** Target tokens that counted. */
  readonly tokens: number
  readonly bpb: number
  /** Forward FLOPs actually spent per position (below the nominal count when a depth policy skips work). */
  readonly flopsPerToken: number
  /** Blocks run in full per position, on average. */
  readonly blocksPerToken: number
}

/**
 * The summed cross-entropy of a batch's counted targets as decoding computes them: each row
 * teacher-forced through the native decode program from an empty cache (all its positions as
 * one call's rows), with the weights stored as `weights` says.
 */
const decodedLoss = (model: Model, params: ParamValues, b: HostBatch, trace: DepthTrace, weights: Weights): number => {
  let sum = 0
  for (let r = 0; r < b.batch; r++) {
    const mask = b.mask.subarray(r * b.context, (r + 1) * b.context)
    const n = mask.reduce((s, w) => s + w, 0)
    if (n === 0) continue
    const row = b.tokens.subarray(r * (b.context + 1), (r + 1) * (b.context + 1))
    const cache = new DecodeCache()
    try {
      sum +=
        n *
        tf.tidy(() => {
          const logits = model.apply(params, tf.tensor2d(row.subarray(0, b.context), [1, b.context], "int32"), { cache, trace, weights })
          return crossEntropy(logits.reshape([b.context, model.spec.vocab]), tf.tensor1d(row.subarray(1), "int32"), tf.tensor1d(mask)).dataSync()[0]!
        })
    } finally {
      cache.dispose()
    }
  }
  return sum
}

/**
 * Validation loss over the given batches, weighting every counted target token equally
 * (batches with padding weigh by their real token count, not per batch). One batch per step;
 * each step yields the target tokens counted so far. With int8 weights the loss is what the
 * native decode program computes (decodedLoss); fp32 is the model's own loss.
 */
export function* evaluation(model: Model, params: ParamValues, batches: Iterable<HostBatch>, bytesPerToken: number, weights: Weights = "fp32"): Generator<number, Evaluation> {
  let sum = 0
  let count = 0
  const trace = new DepthTrace()
  for (const b of batches) {
    const n = b.mask.reduce((s, w) => s + w, 0)
    if (n === 0) continue
    const loss =
      weights === "int8"
        ? decodedLoss(model, params, b, trace, weights) / n
        : tf.tidy(() =>
            model.loss(params, {
              tokens: tf.tensor2d(b.tokens, [b.batch, b.context + 1], "int32"),
              mask: tf.tensor2d(b.mask, [b.batch, b.context], "float32"),
            }, { trace }).dataSync()[0]!,
          )
    sum += loss * n
    count += n
    yield count
  }
  if (count === 0) throw new Error("evaluate: no validation tokens to evaluate on")
  const loss = sum / count
  return { loss, tokens: count, bpb: bitsPerByte(loss, bytesPerToken), flopsPerToken: trace.flopsPerToken, blocksPerToken: trace.blocksPerToken }
}

export const evaluate = (
  model: Model,
  params: ParamValues,
  batches: Iterable<HostBatch>,
  bytesPerToken: number,
  onBatch?: (tokensSoFar: number) => void,
  weights: Weights = "fp32",
): Evaluation => drain(evaluation(model, params, batches, bytesPerToken, weights), onBatch)
