import * as tf from "@tensorflow/tfjs"
import { beforeAll, describe, expect, it } from "vitest"
import { attention, block, decoder, depth, ffn } from "../../dsl/index.js"
import { Effect, Exit, Fiber } from "effect"
import { generate, sampling } from "../../src/eval/generate.js"
import { stepwise } from "../../src/eval/stepwise.js"
import { compile, DecodeCache } from "../../src/model/index.js"
import { Rng } from "../../src/random/rng.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const model = compile(
  decoder({ vocab: 23, width: 16, context: 12, layers: depth(2, block({ attention: attention("full", { heads: 2 }), ffn: ffn("gelu") })) }),
)

describe("generation with a KV cache", () => {
  it("gives the same logits at every step as a full forward pass", () => {
    const params = model.init(4)
    const seq = [3, 14, 7, 7, 0, 22, 9, 1, 5, 11]
    const full = tf.tidy(() => model.apply(params, tf.tensor2d([seq], [1, seq.length], "int32")).arraySync()[0]!)
    const cache = new DecodeCache()
    // Prefill three tokens at once, then one token at a time.
    const prefill = tf.tidy(() => model.apply(params, tf.tensor2d([seq.slice(0, 3)], [1, 3], "int32"), { cache }).arraySync()[0]!)
    const steps = [...prefill]
    for (let t = 3; t < seq.length; t++) {
      steps.push(tf.tidy(() => model.apply(params, tf.tensor2d([[seq[t]!]], [1, 1], "int32"), { cache }).arraySync()[0]![0]!))
    }
    cache.dispose()
    for (let t = 0; t < seq.length; t++) for (let v = 0; v < 23; v++) expect(steps[t]![v]!).toBeCloseTo(full[t]![v]!, 5)
    tf.dispose(Object.values(params))
  })

  it("greedy generation equals argmax decoding without a cache, past the context length", () => {
    const params = model.init(9)
    const before = tf.memory().numTensors
    const prompt = [1, 2, 3]
    const out = generate(model, params, prompt, { tokens: 15, temperature: 0 }, Rng.fromSeed(1))
    expect(tf.memory().numTensors).toBe(before)
    // Reference: recompute the whole window each step; at the context limit the generator restarts
    // from the last half of the sequence, so the reference does the same.
    const ids = [...prompt]
    let windowStart = 0
    const reference: number[] = []
    for (let i = 0; i < 15; i++) {
      if (ids.length - windowStart > 12) windowStart = ids.length - 6
      const window = ids.slice(windowStart)
      const next = tf.tidy(() => {
        const logits = model.apply(params, tf.tensor2d([window], [1, window.length], "int32"))
        return tf.argMax(tf.slice(logits, [0, window.length - 1, 0], [1, 1, 23]).reshape([23])).dataSync()[0]!
      })
      reference.push(next)
      ids.push(next)
    }
    expect(out).toEqual(reference)
    tf.dispose(Object.values(params))
  })
})

describe("generation with a non-causal attention kind", () => {
  it("recomputes the window each step instead of caching", () => {
    const linformer = compile(
      decoder({ vocab: 23, width: 16, context: 8, allowNonCausal: true, layers: depth(1, block({ attention: attention("linformer", { heads: 2, k: 4 }), ffn: ffn("gelu") })) }),
    )
    const params = linformer.init(2)
    const out = generate(linformer, params, [1, 2], { tokens: 10, temperature: 0 }, Rng.fromSeed(1))
    const ids = [1, 2]
    for (let i = 0; i < 10; i++) {
      const window = ids.slice(-8)
      ids.push(
        tf.tidy(() => {
          const logits = linformer.apply(params, tf.tensor2d([window], [1, window.length], "int32"))
          return tf.argMax(tf.slice(logits, [0, window.length - 1, 0], [1, 1, 23]).reshape([23])).dataSync()[0]!
        }),
      )
    }
    expect(out).toEqual(ids.slice(2))
    tf.dispose(Object.values(params))
  })
})

describe("generation as a stepwise Effect", () => {
  it("stops between tokens when interrupted, releasing the cache, and otherwise equals generate", async () => {
    const params = model.init(5)
    const before = tf.memory().numTensors
    const options = { tokens: 40, temperature: 1 }
    const whole = generate(model, params, [1, 2], options, Rng.fromSeed(3))
    expect(await Effect.runPromise(stepwise(sampling(model, params, [1, 2], options, Rng.fromSeed(3))))).toEqual(whole)
    let drawn = 0
    const fiber = Effect.runFork(stepwise(sampling(model, params, [1, 2], { tokens: 1_000_000, temperature: 1 }, Rng.fromSeed(3)), () => void drawn++))
    await new Promise((r) => setTimeout(r, 200))
    const exit = await Effect.runPromise(Fiber.interrupt(fiber).pipe(Effect.andThen(Fiber.await(fiber))))
    expect(Exit.hasInterrupts(exit)).toBe(true)
    expect(drawn).toBeGreaterThan(0)
    expect(drawn).toBeLessThan(1_000_000)
    expect(tf.memory().numTensors).toBe(before)
    tf.dispose(Object.values(params))
  })
})
