import * as tf from "@tensorflow/tfjs"
import type { Weights } from "../decode/weights.js"
import type { DepthTrace } from "../depth/trace.js"
import { DecodeCache, type Model, type ParamValues } from "../model/compile.js"
import type { Rng } from "../random/rng.js"
import { sampleToken, type SamplingOptions } from "./sampling.js"
import { drain } from "./stepwise.js"

/**
 * Autoregressive sampling with a key/value cache: the prompt is run once, then each new
 * token costs one position's forward pass. When the sequence reaches the longest length the
 * position scheme supports, the cache restarts from the last half of the sequence.
 */
export interface GenerateOptions extends SamplingOptions {
  /** New tokens to produce at most. */
  readonly tokens: number
  /** Stop after producing this token (e.g. <|endoftext|>). */
  readonly stop?: number
  /** Counts the compute spent on every position run (prompt included), and a depth policy's decisions. */
  readonly trace?: DepthTrace
  /** How the native decode program stores the weights (default fp32); int8 needs that program. */
  readonly weights?: Weights
}

/**
 * The last position's logits: from the native decoder when it runs, else from tfjs, read once
 * (outside tidy, which would walk a returned array element by element).
 */
const lastLogits = (model: Model, params: ParamValues, ids: ReadonlyArray<number>, cache?: DecodeCache, trace?: DepthTrace, weights?: Weights): Float32Array => {
  const native = cache && model.decodeNative(params, ids, cache, trace, weights)
  if (native) return native
  const last = tf.tidy(() => {
    const logits = model.apply(params, tf.tensor2d([ids as number[]], [1, ids.length], "int32"), { ...(cache ? { cache } : {}), ...(trace ? { trace } : {}) })
    return tf.slice(logits, [0, ids.length - 1, 0], [1, 1, model.spec.vocab])
  })
  try {
    return last.dataSync() as Float32Array
  } finally {
    last.dispose()
  }
}

/** The sampling one token per step: each step yields the token drawn; the end returns them all. */
export function* sampling(model: Model, params: ParamValues, prompt: ReadonlyArray<number>, options: GenerateOptions, rng: Rng): Generator<number, number[]> {
  if (prompt.length === 0) throw new Error("generate: the prompt must have at least one token")
  const limit = model.maxLength ?? model.spec.context
  // With a non-causal kind, earlier positions change as tokens are added, so every step reruns the window.
  if (model.spec.allowNonCausal) return yield* samplingWithoutCache(model, params, prompt, options, rng, limit)
  const keep = Math.max(1, Math.floor(limit / 2))
  const cache = new DecodeCache()
  try {
    const ids = prompt.slice(-limit)
    const out: number[] = []
    let logits = lastLogits(model, params, ids, cache, options.trace, options.weights)
    while (out.length < options.tokens) {
      const next = sampleToken(logits, options, rng)
      out.push(next)
      ids.push(next)
      yield next
      if (next === options.stop || out.length === options.tokens) break
      if (cache.length + 1 > limit) {
        cache.dispose()
        logits = lastLogits(model, params, ids.slice(-keep), cache, options.trace, options.weights)
      } else {
        logits = lastLogits(model, params, [next], cache, options.trace, options.weights)
      }
    }
    return out
  } finally {
    cache.dispose()
  }
}

function* samplingWithoutCache(
  model: Model,
  params: ParamValues,
  prompt: ReadonlyArray<number>,
  options: GenerateOptions,
  rng: Rng,
  limit: number,
): Generator<number, number[]> {
  const ids = [...prompt]
  const out: number[] = []
  // The native program runs the whole window from position 0 in a cache of its own each step; tfjs runs it without one.
  const windowLogits = (window: number[]): Float32Array => {
    const fresh = new DecodeCache()
    try {
      return model.decodeNative(params, window, fresh, options.trace, options.weights) ?? lastLogits(model, params, window, undefined, options.trace)
    } finally {
      fresh.dispose()
    }
  }
  while (out.length < options.tokens) {
    const next = sampleToken(windowLogits(ids.slice(-limit)), options, rng)
    out.push(next)
    ids.push(next)
    yield next
    if (next === options.stop) break
  }
  return out
}

export const generate = (model: Model, params: ParamValues, prompt: ReadonlyArray<number>, options: GenerateOptions, rng: Rng): number[] =>
  drain(sampling(model, params, prompt, options, rng))
