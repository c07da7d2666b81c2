/**
 * Chooses the next token from a vector of logits: temperature scaling, then top-k, then top-p
 * (nucleus: the smallest set of most likely tokens whose probability reaches p), then one
 * draw from the renormalised distribution. Temperature 0 is greedy argmax. Probabilities are
 * computed in float64 after subtracting the maximum logit, so large logits cannot overflow.
 */
import { Data } from "effect"
import type { Rng } from "../random/rng.js"

export interface SamplingOptions {
  /** 0 picks the most likely token; otherwise logits are divided by it. */
  readonly temperature: number
  /** Keep only the k most likely tokens; undefined keeps all. */
  readonly topK?: number | undefined
  /** Keep the smallest set of most likely tokens whose probability is at least p, in (0, 1]. */
  readonly topP?: number | undefined
}

export class SamplingError extends Data.TaggedError("SamplingError")<{ readonly reason: string }> {
  override get message(): string {
    return `sampling: ${this.reason}`
  }
}

/** Returns why `options` are invalid, or undefined when they are fine. */
export const samplingOptionsProblem = (options: SamplingOptions): string | undefined => {
  const { temperature, topK, topP } = options
  if (!(Number.isFinite(temperature) && temperature >= 0)) return `temperature must be finite and >= 0, got ${temperature}`
  if (topK !== undefined && !(Number.isInteger(topK) && topK >= 1)) return `topK must be an integer >= 1, got ${topK}`
  if (topP !== undefined && !(topP > 0 && topP <= 1)) return `topP must be in (0, 1], got ${topP}`
  return undefined
}

const argmax = (logits: Float32Array): number => {
  let best = 0
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i
  return best
}

/** The sampled token id; throws SamplingError for invalid options or logits that are empty or NaN. */
export const sampleToken = (logits: Float32Array, options: SamplingOptions, rng: Rng): number => {
  const problem = samplingOptionsProblem(options)
  if (problem !== undefined) throw new SamplingError({ reason: problem })
  if (logits.length === 0) throw new SamplingError({ reason: "logits are empty" })
  for (let i = 0; i < logits.length; i++) {
    if (Number.isNaN(logits[i])) throw new SamplingError({ reason: `logit ${i} is NaN` })
  }
  const { temperature, topK, topP } = options
  if (temperature === 0 || topK === 1) return argmax(logits)

  let candidates = Array.from({ length: logits.length }, (_, i) => i)
  if (topK !== undefined || (topP !== undefined && topP < 1)) {
    // Ties keep ascending ids, so the kept set is deterministic.
    candidates.sort((a, b) => logits[b] - logits[a] || a - b)
    if (topK !== undefined) candidates = candidates.slice(0, topK)
  }
  let maxLogit = -Infinity
  for (const i of candidates) if (logits[i] > maxLogit) maxLogit = logits[i]
  if (maxLogit === -Infinity) throw new SamplingError({ reason: "all candidate logits are -Infinity" })
  const weights = candidates.map((i) => Math.exp((logits[i] - maxLogit) / temperature))
  let total = weights.reduce((a, b) => a + b, 0)

  if (topP !== undefined && topP < 1) {
    // candidates are sorted by logit, hence by weight: keep the shortest prefix reaching topP.
    let cumulative = 0
    let keep = 0
    while (keep < weights.length && cumulative < topP * total) cumulative += weights[keep++]
    candidates = candidates.slice(0, keep)
    weights.length = keep
    total = cumulative
  }

  let u = rng.nextFloat() * total
  let lastPositive = candidates[0]
  for (let j = 0; j < candidates.length; j++) {
    if (weights[j] === 0) continue
    lastPositive = candidates[j]
    u -= weights[j]
    if (u < 0) return candidates[j]
  }
  // Rounding can leave u a hair above 0 after the last weight; the last possible token owns that sliver.
  return lastPositive
}
