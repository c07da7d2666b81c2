import * as tf from "@tensorflow/tfjs"
import { Result } from "effect"
import { beforeAll, describe, expect, it } from "vitest"
import { decodeSpec, diffSpecs, gpt2, hashSpec, llama, paramCounts, printSpec , type DepthSpec } from "../../dsl/index.js"
import { compile } from "../../src/model/index.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

describe("llama preset", () => {
  const spec = llama({ vocab: 4096, width: 256, context: 256, layers: 4, heads: 4 })

  it("is RMSNorm (eps 1e-5), RoPE and SwiGLU without biases, and round-trips through JSON", () => {
    const r = decodeSpec(JSON.parse(JSON.stringify(spec)))
    expect(Result.isSuccess(r) && r.success).toEqual(spec)
    expect(spec.posenc).toEqual({ op: "posenc", kind: "rope", base: 10000 })
    expect(spec.norm.kind).toBe("rms")
    const [attn, mlp] = (spec.layers as DepthSpec).block.layers.map((l) => (l.op === "residual" ? l.body : []))
    expect(attn!.map((l) => l.op === "norm" ? l.kind : l.op === "attention" && l.bias)).toEqual(["rms", false])
    expect(mlp!.map((l) => l.op === "norm" ? l.kind : l.op === "ffn" && `${l.activation.kind} bias=${l.bias}`)).toEqual(["rms", "swiglu bias=false"])
    // Llama 2's and llama2.c's epsilon, so the model exports to run.c unchanged.
    expect([spec.norm, attn![0], mlp![0]].map((n) => n?.op === "norm" && n.kind === "rms" && n.eps)).toEqual([1e-5, 1e-5, 1e-5])
  })

  it("counts its parameters in closed form", () => {
    // Per block: 4·D² attention, 3·D·688 SwiGLU (2/3 of 4·256 rounded up to a multiple of 8), two RMS gains.
    const D = 256
    const perBlock = 4 * D * D + 3 * D * 688 + 2 * D
    expect(paramCounts(spec)).toEqual({ total: 4096 * D + 4 * perBlock + D + D * 4096, embedding: 4096 * D, nonEmbedding: 4 * perBlock + D + D * 4096 })
    expect(printSpec(spec)).toMatch(/ffn swiglu 256→688→256/)
  })

  it("runs forward", () => {
    const m = compile(llama({ vocab: 50, width: 32, context: 16, layers: 2, heads: 4 }))
    const p = m.init(1)
    const logits = m.apply(p, tf.tensor2d([[1, 2, 3, 4, 5, 6]], [1, 6], "int32"))
    expect(logits.shape).toEqual([1, 6, 50])
    expect(logits.dataSync().every(Number.isFinite)).toBe(true)
    tf.dispose([logits, ...Object.values(p)])
  })
})

describe("gpt2 preset", () => {
  const spec = gpt2({ vocab: 4096, width: 256, context: 256, layers: 4, heads: 4 })

  it("is GPT-2's model: GELU-tanh, learned positions, pre-LayerNorm (eps 1e-5), a 4×-wide FFN, biases and a tied head", () => {
    expect(spec.posenc).toEqual({ op: "posenc", kind: "learned" })
    expect(spec.norm).toEqual({ op: "norm", kind: "layer", eps: 1e-5, bias: true })
    expect(spec.tied).toBe(true)
    const [attn, mlp] = (spec.layers as DepthSpec).block.layers.map((l) => (l.op === "residual" ? l.body : []))
    expect(attn!.map((l) => (l.op === "norm" ? l.kind : l.op === "attention" && `${l.kind} bias=${l.bias}`))).toEqual(["layer", "full bias=true"])
    expect(mlp!.map((l) => (l.op === "norm" ? l.kind : l.op === "ffn" && `${l.activation.kind} ×${l.mult} bias=${l.bias}`))).toEqual(["layer", "gelu-tanh ×4 bias=true"])
  })

  it("with ReLU builds the base decoder of experiments/base.ts", async () => {
    const { baseModel } = await import("../../experiments/base.js")
    const relu = gpt2({ vocab: 4096, width: 256, context: 256, layers: 4, heads: 4, activation: "relu" })
    expect(diffSpecs(relu, baseModel)).toEqual([])
    expect(hashSpec(relu)).toBe(hashSpec(baseModel))
    expect(diffSpecs(spec, baseModel)).toHaveLength(1)
  })
})
