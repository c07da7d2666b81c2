import * as tf from "@tensorflow/tfjs"
import { Result } from "effect"
import { beforeAll, describe, expect, it } from "vitest"
import { attention, block, decoder, depth, earlyExit, ffn, layerDrop, mixtureOfDepths, posenc, stack, type DecoderSpec } from "../../dsl/index.js"
import { decodeSpec } from "../../dsl/decode.js"
import { hashSpec } from "../../dsl/hash.js"
import { printSpec } from "../../dsl/print.js"
import { compile } from "../../src/model/index.js"
import { describeNative } from "../backend/native-suite.js"

/**
 * Activation checkpointing (`checkpoint: "blocks"`): the backward pass recomputes each block's
 * forward, so the gradients are the ones keeping every activation gives, dropout masks included,
 * while a step holds less.
 */
beforeAll(async () => {
  await tf.setBackend("cpu")
})

const spec = (o: { checkpoint?: "blocks"; pos?: "learned" | "t5" | "rope"; policy?: Parameters<typeof depth>[2]; dropout?: number; context?: number; width?: number; layers?: number; mixed?: boolean } = {}): DecoderSpec => {
  const rate = o.dropout ?? 0.2
  const dense = block({ attention: attention("full", { heads: 2, dropout: rate }), ffn: ffn("gelu", { dropout: rate }), dropout: rate })
  // Linformer's layerwise projection is one model-wide parameter every block reads.
  const shared = block({ attention: attention("linformer-causal", { heads: 2, k: 4, block: 4, sharing: "layerwise" }), ffn: ffn("swiglu", { dropout: rate }), dropout: rate })
  return decoder({
    vocab: 23,
    width: o.width ?? 16,
    context: o.context ?? 8,
    dropout: rate,
    posenc: o.pos === "t5" ? posenc("t5", { heads: 2 }) : posenc(o.pos ?? "learned"),
    layers: o.mixed ? stack([dense, shared, shared], o.policy) : depth(o.layers ?? 3, dense, o.policy),
    ...(o.checkpoint ? { checkpoint: o.checkpoint } : {}),
  })
}

const batchOf = (b: number, t: number, vocab: number) => ({
  tokens: tf.tensor2d(Array.from({ length: b * (t + 1) }, (_, i) => (i * 7 + 3) % vocab), [b, t + 1], "int32"),
  mask: tf.ones([b, t]) as tf.Tensor2D,
})

/** Loss and gradients of one training micro-batch, by parameter name. */
const step = (s: DecoderSpec, seed = 5) => {
  const model = compile(s)
  const params = model.init(1)
  const batch = batchOf(2, s.context, s.vocab)
  const names = new Map(Object.entries(params).map(([name, v]) => [v.name, name]))
  const { value, grads } = tf.variableGrads(() => model.loss(params, batch, { training: true, dropoutSeed: seed }))
  const out = { loss: value.dataSync()[0]!, grads: new Map(Object.entries(grads).map(([v, g]) => [names.get(v)!, g.dataSync() as Float32Array])) }
  tf.dispose([value, ...Object.values(grads), ...Object.values(params), batch.tokens, batch.mask])
  return out
}

const expectSameGradients = (plain: ReturnType<typeof step>, checkpointed: ReturnType<typeof step>) => {
  expect(checkpointed.loss).toBe(plain.loss)
  expect([...checkpointed.grads.keys()].sort()).toEqual([...plain.grads.keys()].sort())
  for (const [name, g] of plain.grads) {
    const c = checkpointed.grads.get(name)!
    const scale = Math.max(1e-6, ...g.map(Math.abs))
    const worst = Math.max(...g.map((v, i) => Math.abs(v - c[i]!)))
    expect(worst / scale, name).toBeLessThan(1e-6)
  }
}

describe("activation checkpointing", () => {
  it("is an optional key of the decoder: decoded, refused at its path when unknown, printed, absent by default", () => {
    const plain = spec()
    expect("checkpoint" in plain).toBe(false)
    expect(Result.isSuccess(decodeSpec(JSON.parse(JSON.stringify(spec({ checkpoint: "blocks" })))))).toBe(true)
    const bad = decodeSpec({ ...JSON.parse(JSON.stringify(plain)), checkpoint: "layers" })
    expect(Result.isFailure(bad) && bad.failure.message).toBe('at ["checkpoint"]: Expected "blocks"')
    expect(printSpec(spec({ checkpoint: "blocks" })).split("\n")[0]).toMatch(/^decoder vocab=23 width=16 context=8 dropout=0\.2 checkpoint=blocks\s/)
    expect(hashSpec(spec({ checkpoint: "blocks" }))).not.toBe(hashSpec(plain))
  })

  const cases: ReadonlyArray<readonly [string, Parameters<typeof spec>[0]]> = [
    ["dropout everywhere, learned positions", {}],
    ["T5's bias table read inside each block", { pos: "t5" }],
    ["RoPE", { pos: "rope" }],
    ["a stack of different blocks sharing Linformer's model-wide projection", { mixed: true }],
    ["LayerDrop", { policy: layerDrop({ rate: 0.5 }) }],
    ["early exit", { policy: earlyExit() }],
    ["mixture-of-depths", { policy: mixtureOfDepths({ capacity: 0.5, every: 1 }) }],
  ]
  it.each(cases)("gives the gradients of the stored activations, dropout masks included (%s)", (_name, o) => {
    expectSameGradients(step(spec(o)), step(spec({ ...o, checkpoint: "blocks" })))
  })

  it("a different dropout seed changes the gradients (the comparison sees the masks)", () => {
    const a = step(spec({ checkpoint: "blocks" }), 5)
    const b = step(spec({ checkpoint: "blocks" }), 6)
    expect(b.loss).not.toBe(a.loss)
  })

  it("holds less at the step's peak and leaks no tensor", async () => {
    const peak = async (s: DecoderSpec) => {
      const model = compile(s)
      const params = model.init(1)
      const batch = batchOf(4, s.context, s.vocab)
      const run = () => {
        const { value, grads } = tf.variableGrads(() => model.loss(params, batch, { training: true, dropoutSeed: 1 }))
        tf.dispose([value, ...Object.values(grads)])
      }
      run()
      const tensors = tf.memory().numTensors
      const before = tf.memory().numBytes
      const info = await tf.profile(run)
      for (let i = 0; i < 2; i++) run()
      expect(tf.memory().numTensors).toBe(tensors)
      tf.dispose([...Object.values(params), batch.tokens, batch.mask])
      return info.peakBytes - before
    }
    const o = { context: 16, width: 16, layers: 6, dropout: 0.1 }
    const plain = await peak(spec(o))
    const checkpointed = await peak(spec({ ...o, checkpoint: "blocks" }))
    // Measured when written: 0.21, and 0.11 since the recomputation frees each gradient once used.
    expect(checkpointed).toBeLessThan(0.16 * plain)
  })
})

describeNative("activation checkpointing on the native backend (fused attention)", () => {
  it("gives the gradients of the stored activations", async () => {
    await tf.setBackend("native")
    process.env["TFJS_NATIVE_FUSED_ATTENTION"] = "1"
    try {
      const o = { dropout: 0.1, pos: "rope" as const }
      expectSameGradients(step(spec(o)), step(spec({ ...o, checkpoint: "blocks" })))
    } finally {
      delete process.env["TFJS_NATIVE_FUSED_ATTENTION"]
      await tf.setBackend("cpu")
    }
  })
})
