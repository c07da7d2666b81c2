import { attentionModule } from "../src/attention/index.js"
import { ffnParams } from "../src/ffn/ffn.js"
import type { Dims, ParamDecl, ParamDecls } from "../src/model/kind.js"
import { normModule } from "../src/norm/index.js"
import { posencModule } from "../src/posenc/index.js"
import { dimsOf } from "./decode.js"
import type { DecoderSpec, Layer } from "./nodes.js"

/**
 * Every parameter of a model, named as it appears in checkpoints (`blocks.0.0.attention.wq`),
 * with shape, initialiser and role. Counts, FLOPs, printing and the interpreter all read this
 * one table, so they cannot disagree.
 */
export interface NamedParam {
  readonly name: string
  readonly decl: ParamDecl
}

/** A name beginning with "/" is model-wide, shared by every layer that declares it (Linformer's layerwise E). */
export const paramName = (prefix: string, name: string): string => (name.startsWith("/") ? name.slice(1) : `${prefix}.${name}`)

const prefixed = (prefix: string, decls: ParamDecls): NamedParam[] =>
  Object.entries(decls).map(([name, decl]) => ({ name: paramName(prefix, name), decl }))

export const layerOwnParams = (layer: Layer, dims: Dims): ParamDecls => {
  switch (layer.op) {
    case "attention":
      return attentionModule(layer).params(layer, dims)
    case "ffn":
      return ffnParams(layer, dims)
    case "norm":
      return normModule(layer).params(layer, dims)
    case "residual":
      return {}
  }
}

/**
 * Names of the children of a residual: the op, numbered only when it repeats, so the
 * pre-norm block reads `0.norm`, `0.attention`, `1.norm`, `1.ffn`.
 */
export const childNames = (layers: ReadonlyArray<Layer>): string[] =>
  layers.map((l, i) => (layers.filter((m) => m.op === l.op).length > 1 ? `${l.op}${layers.slice(0, i).filter((m) => m.op === l.op).length}` : l.op))

/** Names of the layers of a block: their index, then the op for non-residual layers. */
export const blockChildNames = (layers: ReadonlyArray<Layer>): string[] =>
  layers.map((l, i) => (l.op === "residual" ? `${i}` : `${i}.${l.op}`))

export const layerParams = (layer: Layer, dims: Dims, prefix: string): NamedParam[] =>
  layer.op === "residual"
    ? childNames(layer.body).flatMap((name, i) => layerParams(layer.body[i]!, dims, `${prefix}.${name}`))
    : prefixed(prefix, layerOwnParams(layer, dims))

export const blockParams = (spec: DecoderSpec, index: number): NamedParam[] => {
  const dims = dimsOf(spec)
  const layers = spec.layers.block.layers
  return blockChildNames(layers).flatMap((name, i) => layerParams(layers[i]!, dims, `blocks.${index}.${name}`))
}

export const paramTable = (spec: DecoderSpec): NamedParam[] => {
  const dims = dimsOf(spec)
  const embedding = { shape: [spec.vocab, spec.width], init: { kind: "normal", std: 0.02 }, decay: false, embedding: true } as const
  const all = [
    { name: "embed.tokens", decl: embedding },
    ...prefixed("posenc", posencModule(spec.posenc).params(spec.posenc, dims)),
    ...Array.from({ length: spec.layers.n }, (_, i) => blockParams(spec, i)).flat(),
    ...prefixed("norm", normModule(spec.norm).params(spec.norm, dims)),
    ...(spec.tied ? [] : [{ name: "head.weight", decl: { shape: [spec.width, spec.vocab], init: { kind: "normal", std: 0.02 }, decay: true } as const }]),
  ]
  // A model-wide parameter is declared by each layer that uses it but exists once.
  return all.filter((p, i) => all.findIndex((q) => q.name === p.name) === i)
}

export const size = (decl: ParamDecl): number => decl.shape.reduce((a, b) => a * b, 1)

export interface ParamCounts {
  readonly total: number
  /** Token and position tables. An untied LM head is a matmul and counts as non-embedding. */
  readonly embedding: number
  readonly nonEmbedding: number
}

export const countParams = (params: ReadonlyArray<NamedParam>): ParamCounts => {
  const total = params.reduce((s, p) => s + size(p.decl), 0)
  const embedding = params.filter((p) => p.decl.embedding).reduce((s, p) => s + size(p.decl), 0)
  return { total, embedding, nonEmbedding: total - embedding }
}

export const paramCounts = (spec: DecoderSpec): ParamCounts => countParams(paramTable(spec))

const layerExtraFlops = (layer: Layer, dims: Dims): number => {
  switch (layer.op) {
    case "attention":
      return attentionModule(layer).flops(layer, dims)
    case "norm":
      return normModule(layer).flops(layer, dims)
    case "ffn":
      return 0
    case "residual":
      return layer.body.reduce((s, l) => s + layerExtraFlops(l, dims), 0)
  }
}

export interface Flops {
  /** Forward FLOPs per token at full context. */
  readonly forward: number
  /** Forward + backward (backward ≈ 2× forward, Kaplan et al. 2020). */
  readonly training: number
}

/**
 * FLOPs per token: 2 per weight of every matmul (all non-embedding parameters, plus the LM
 * head, which reuses the embedding when tied) plus what kinds compute beyond their weights
 * (attention scores). Gathers, norms and elementwise work are left out, as is customary.
 */
export const flopsPerToken = (spec: DecoderSpec): Flops => {
  const dims = dimsOf(spec)
  const table = paramTable(spec)
  const matmulWeights = table.filter((p) => !p.decl.embedding && !p.decl.alongSequence && p.decl.shape.length >= 2).reduce((s, p) => s + size(p.decl), 0)
  const head = spec.tied ? spec.vocab * spec.width : 0
  const extra =
    spec.layers.n * spec.layers.block.layers.reduce((s, l) => s + layerExtraFlops(l, dims), 0) +
    posencModule(spec.posenc).flops(spec.posenc, dims)
  const forward = 2 * (matmulWeights + head) + extra
  return { forward, training: 3 * forward }
}

export const posencParamsCount = (spec: DecoderSpec): number =>
  Object.values(posencModule(spec.posenc).params(spec.posenc, dimsOf(spec))).reduce((s, d) => s + size(d), 0)
