import * as tf from "@tensorflow/tfjs"
import { Effect } from "effect"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { type DecoderSpec, paramTable } from "../../dsl/index.js"
import type { ExportFile } from "../../src/export/exported.js"
import type { Weights } from "../../src/export/weights.js"
import type { Model } from "../../src/model/index.js"
import { Rng } from "../../src/random/rng.js"
import { Tokenizer } from "../../src/tokenizer/tokenizer.js"
import { decodeSafetensors } from "../../src/train/safetensors.js"
import type { F64, Lookup } from "./reference.js"

/** A real tokenizer of this project (byte-level BPE, 678 ids), from a fixture run. */
export const fixtureTokenizer = (): Tokenizer =>
  Tokenizer.fromJSON(readFileSync(join(import.meta.dirname, "../fixtures/pre-stack/gpt2/tokenizer.json"), "utf8"))

/**
 * Random weights large enough that logits differ clearly between tokens (greedy choices are
 * then stable under float32 rounding), with gains away from 1 and biases away from 0, so a
 * swapped or dropped gain or bias changes the logits.
 */
export const randomWeights = (spec: DecoderSpec, seed: number, std = 0.3): Weights => {
  const rng = Rng.derive(seed, "export-test")
  return Object.fromEntries(
    paramTable(spec).map((p) => {
      const data = new Float32Array(p.decl.shape.reduce((a, b) => a * b, 1))
      const base = p.decl.init.kind === "ones" ? 1 : 0
      const scale = p.decl.init.kind === "normal" ? std : 0.2
      for (let i = 0; i < data.length; i++) data[i] = base + scale * rng.nextNormal()
      return [p.name, data]
    }),
  )
}

export const tensorsOf = (spec: DecoderSpec, weights: Weights): Record<string, tf.Tensor> =>
  Object.fromEntries(paramTable(spec).map((p) => [p.name, tf.tensor(weights[p.name]!, [...p.decl.shape], "float32")]))

/** The project's logits [T][V] for one sequence. */
export const projectLogits = (model: Model, params: Record<string, tf.Tensor>, ids: readonly number[]): number[][] =>
  tf.tidy(() => model.apply(params, tf.tensor2d([ids as number[]], [1, ids.length], "int32")).arraySync()[0]!)

export const fileOf = (files: ReadonlyArray<ExportFile>, name: string): Uint8Array => {
  const f = files.find((x) => x.name === name)
  if (f === undefined) throw new Error(`no ${name} among ${files.map((x) => x.name).join(", ")}`)
  return f.data
}

export const jsonOf = (files: ReadonlyArray<ExportFile>, name: string): Record<string, unknown> =>
  JSON.parse(new TextDecoder().decode(fileOf(files, name))) as Record<string, unknown>

/** Tensors of a safetensors file by name, widened to float64. */
export const safetensorsLookup = (bytes: Uint8Array): { lookup: Lookup; names: string[] } => {
  const { tensors, metadata } = Effect.runSync(decodeSafetensors(bytes, "model.safetensors"))
  if (metadata["format"] !== "pt") throw new Error(`safetensors metadata format is ${metadata["format"]}`)
  return {
    names: Object.keys(tensors),
    lookup: (name) => {
      const t = tensors[name]
      if (t === undefined) throw new Error(`model.safetensors has no tensor ${name}`)
      return { shape: t.shape, data: Float64Array.from(t.data) } satisfies F64
    },
  }
}

export const maxAbsDiff = (a: ArrayLike<number>[], b: ArrayLike<number>[]): number => {
  let worst = 0
  a.forEach((row, t) => {
    for (let v = 0; v < row.length; v++) worst = Math.max(worst, Math.abs(row[v]! - b[t]![v]!))
  })
  return worst
}

/**
 * Reads model.bin as run.c's read_checkpoint and memory_map_weights do (legacy version 0)
 * and names its tensors as transformers' Llama does, so the float64 reference can run it.
 */
export const readModelBin = (bytes: Uint8Array) => {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const [dim, hidden, layers, heads, kvHeads, signedVocab, seqLen] = Array.from({ length: 7 }, (_, i) => view.getInt32(4 * i, true)) as number[]
  const v = Math.abs(signedVocab!)
  const floats = new Float32Array(bytes.slice(28).buffer)
  let at = 0
  const take = (n: number, shape: number[]): F64 => {
    const t = { shape, data: Float64Array.from(floats.subarray(at, at + n)) }
    at += n
    return t
  }
  const t: Record<string, F64> = {}
  const perLayer = (name: string, rows: number, cols: number) => {
    for (let l = 0; l < layers!; l++) t[`model.layers.${l}.${name}`] = take(rows * cols, cols === 1 ? [rows] : [rows, cols])
  }
  t["model.embed_tokens.weight"] = take(v * dim!, [v, dim!])
  perLayer("input_layernorm.weight", dim!, 1)
  for (const p of ["q", "k", "v", "o"]) perLayer(`self_attn.${p}_proj.weight`, dim!, dim!)
  perLayer("post_attention_layernorm.weight", dim!, 1)
  perLayer("mlp.gate_proj.weight", hidden!, dim!)
  perLayer("mlp.down_proj.weight", dim!, hidden!)
  perLayer("mlp.up_proj.weight", hidden!, dim!)
  t["model.norm.weight"] = take(dim!, [dim!])
  at += seqLen! * (dim! / heads!)
  if (signedVocab! < 0) t["lm_head.weight"] = take(v * dim!, [v, dim!])
  const config = { num_attention_heads: heads, num_hidden_layers: layers, hidden_size: dim, rms_norm_eps: 1e-5, rope_theta: 10000, hidden_act: "silu", tie_word_embeddings: signedVocab! > 0 }
  return { config, lookup: (name: string) => t[name]!, kvHeads, seqLen, consumed: at === floats.length }
}
