import { canonicalJson } from "./hash.js"
import { ffnParams } from "./ffn.js"
import type { Dims, Issue, ParamDecl, ParamDecls } from "./kind.js"
import { attentionModule } from "./kinds/attention/index.js"
import { policyModule } from "./kinds/depth/index.js"
import { normModule } from "./kinds/norm/index.js"
import { posencModule } from "./kinds/posenc/index.js"
import { type BlockSpec, blocksOf, type DecoderSpec, dimsOf, type Layer, type Layers } from "./nodes.js"

/**
 * Every parameter of a model, named as it appears in checkpoints (`blocks.0.0.attention.wq`),
 * with shape, initialiser and role. Counts, FLOPs, printing and the interpreter all derive
 * from the same per-block declarations, so they cannot disagree.
 */
export interface NamedParam {
  readonly name: string
  readonly decl: ParamDecl
}

/** A name beginning with "/" is model-wide, shared by every layer that declares it (Linformer's layerwise E). */
export const paramName = (prefix: string, name: string): string => (name.startsWith("/") ? name.slice(1) : `${prefix}.${name}`)

const isShared = (name: string): boolean => name.startsWith("/")

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

/** A declared parameter, and whether it is model-wide (exists once, however many layers declare it). */
interface Declared {
  readonly param: NamedParam
  readonly shared: boolean
}

export const layerDeclared = (layer: Layer, dims: Dims, prefix: string): Declared[] =>
  layer.op === "residual"
    ? childNames(layer.body).flatMap((name, i) => layerDeclared(layer.body[i]!, dims, `${prefix}.${name}`))
    : Object.entries(layerOwnParams(layer, dims)).map(([name, decl]) => ({ param: { name: paramName(prefix, name), decl }, shared: isShared(name) }))

const blockDeclared = (block: BlockSpec, dims: Dims, index: number): Declared[] =>
  blockChildNames(block.layers).flatMap((name, i) => layerDeclared(block.layers[i]!, dims, `blocks.${index}.${name}`))

/** The parameters of the block at position `index` of the stack (model-wide ones included). */
export const blockParams = (block: BlockSpec, dims: Dims, index: number): NamedParam[] => blockDeclared(block, dims, index).map((d) => d.param)

/** Runs of equal consecutive blocks: one run for a depth node, as many as differ for a stack. */
export interface BlockRun {
  readonly block: BlockSpec
  readonly from: number
  readonly count: number
}

export const blockRuns = (layers: Layers): BlockRun[] => {
  if (layers.op === "depth") return [{ block: layers.block, from: 0, count: layers.n }]
  const runs: BlockRun[] = []
  let key = ""
  layers.blocks.forEach((block, i) => {
    const k = canonicalJson(block)
    const last = runs[runs.length - 1]
    if (last !== undefined && k === key) runs[runs.length - 1] = { ...last, count: last.count + 1 }
    else runs.push({ block, from: i, count: 1 })
    key = k
  })
  return runs
}

/** A parameter and how many copies of it the model holds (its block's run length; 1 for model-wide ones). */
interface Weighed {
  readonly param: NamedParam
  readonly copies: number
}

const embedding = (spec: DecoderSpec): NamedParam => ({
  name: "embed.tokens",
  decl: { shape: [spec.vocab, spec.width], init: { kind: "normal", std: 0.02 }, decay: false, embedding: true },
})

const head = (spec: DecoderSpec): NamedParam[] =>
  spec.tied ? [] : [{ name: "head.weight", decl: { shape: [spec.width, spec.vocab], init: { kind: "normal", std: 0.02 }, decay: true, output: true } }]

/**
 * The depth policy's own parameters (exit heads, routers), named under their block
 * (`blocks.3.router.weight`) and listed after every other parameter, so a model with a policy
 * initialises the decoder's parameters exactly as the same model without one.
 */
export const policyParams = (spec: DecoderSpec): NamedParam[] => {
  const policy = spec.layers.policy
  if (policy === undefined) return []
  const dims = dimsOf(spec)
  return Array.from({ length: dims.layers }, (_, i) => prefixed(`blocks.${i}`, policyModule(policy).params(policy, i, dims.layers, dims))).flat()
}

/** Model-wide parameters are declared by each layer that uses it but exist once: the first declaration stands. */
const distinct = (params: ReadonlyArray<Weighed>): Weighed[] => {
  const seen = new Set<string>()
  return params.filter((p) => !seen.has(p.param.name) && (seen.add(p.param.name), true))
}

/** The parameters by run, without expanding n equal blocks: what counts and FLOPs need. */
const weighed = (spec: DecoderSpec): Weighed[] => {
  const dims = dimsOf(spec)
  const once = (params: NamedParam[]) => params.map((param) => ({ param, copies: 1 }))
  return distinct([
    ...once([embedding(spec), ...prefixed("posenc", posencModule(spec.posenc).params(spec.posenc, dims))]),
    ...blockRuns(spec.layers).flatMap((run) => blockDeclared(run.block, dims, run.from).map((d) => ({ param: d.param, copies: d.shared ? 1 : run.count }))),
    ...once([...prefixed("norm", normModule(spec.norm).params(spec.norm, dims)), ...head(spec), ...policyParams(spec)]),
  ])
}

/** A declaration of a parameter by name and shape, and where it was made. */
export interface Declaration {
  readonly name: string
  readonly shape: readonly number[]
  readonly path: ReadonlyArray<string | number>
}

/** One name, one shape: every declaration whose shape differs from the first of its name. */
export const shapeConflicts = (declarations: ReadonlyArray<Declaration>): Issue[] => {
  const first = new Map<string, Declaration>()
  return declarations.flatMap((d) => {
    const seen = first.get(d.name)
    if (seen === undefined) first.set(d.name, d)
    if (seen === undefined || seen.shape.join(",") === d.shape.join(",")) return []
    return [{ path: d.path, message: `parameter "${d.name}" has shape [${d.shape}] here but [${seen.shape}] at ${JSON.stringify(seen.path)}: one name, one shape` }]
  })
}

/** Model-wide parameters declared with different shapes by different blocks. */
export const sharedParamIssues = (spec: DecoderSpec): Issue[] => {
  const dims = dimsOf(spec)
  const path = (from: number) => (spec.layers.op === "depth" ? ["layers", "block"] : ["layers", "blocks", from])
  return shapeConflicts(
    blockRuns(spec.layers).flatMap((run) =>
      blockDeclared(run.block, dims, run.from)
        .filter((d) => d.shared)
        .map((d) => ({ name: d.param.name, shape: d.param.decl.shape, path: path(run.from) })),
    ),
  )
}

/** Every parameter of the model, each block's under its own index. */
export const paramTable = (spec: DecoderSpec): NamedParam[] => {
  const dims = dimsOf(spec)
  const problems = sharedParamIssues(spec)
  if (problems.length > 0) throw new Error(problems.map((i) => i.message).join("\n"))
  const all = [
    embedding(spec),
    ...prefixed("posenc", posencModule(spec.posenc).params(spec.posenc, dims)),
    ...blocksOf(spec.layers).flatMap((b, i) => blockParams(b, dims, i)),
    ...prefixed("norm", normModule(spec.norm).params(spec.norm, dims)),
    ...head(spec),
    ...policyParams(spec),
  ]
  return distinct(all.map((param) => ({ param, copies: 1 }))).map((w) => w.param)
}

export const size = (decl: ParamDecl): number => decl.shape.reduce((a, b) => a * b, 1)

export interface ParamCounts {
  readonly total: number
  /** Token and position tables. An untied LM head is a matmul and counts as non-embedding. */
  readonly embedding: number
  readonly nonEmbedding: number
}

const countWeighed = (params: ReadonlyArray<Weighed>): ParamCounts => {
  const total = params.reduce((s, p) => s + p.copies * size(p.param.decl), 0)
  const embedding = params.filter((p) => p.param.decl.embedding).reduce((s, p) => s + p.copies * size(p.param.decl), 0)
  return { total, embedding, nonEmbedding: total - embedding }
}

export const countParams = (params: ReadonlyArray<NamedParam>): ParamCounts => countWeighed(params.map((param) => ({ param, copies: 1 })))

export const paramCounts = (spec: DecoderSpec): ParamCounts => countWeighed(weighed(spec))

export const layerExtraFlops = (layer: Layer, dims: Dims): number => {
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

/** What a block's kinds compute beyond their weights, per token. */
export const blockExtraFlops = (block: BlockSpec, dims: Dims): number => block.layers.reduce((s, l) => s + layerExtraFlops(l, dims), 0)

export const isMatmul = (decl: ParamDecl): boolean => !decl.embedding && !decl.alongSequence && decl.shape.length >= 2

export interface Flops {
  /** Forward FLOPs per token at full context. */
  readonly forward: number
  /** Forward + backward (backward ≈ 2× forward, Kaplan et al. 2020). */
  readonly training: number
}

/**
 * FLOPs per token: 2 per weight of every matmul (all non-embedding parameters, plus the LM
 * head, which reuses the embedding when tied) plus what kinds compute beyond their weights
 * (attention scores). Gathers, norms and elementwise work are left out, as is customary. A
 * depth policy adds what it computes at most (exit heads, routers): its nominal maximum, which
 * a token may not spend (src/depth/trace.ts counts what is spent).
 */
export const flopsPerToken = (spec: DecoderSpec): Flops => {
  const dims = dimsOf(spec)
  const policy = spec.layers.policy
  const own = new Set(policyParams(spec).map((p) => p.name))
  const matmulWeights = weighed(spec)
    .filter((p) => isMatmul(p.param.decl) && !own.has(p.param.name))
    .reduce((s, p) => s + p.copies * size(p.param.decl), 0)
  const tiedHead = spec.tied ? spec.vocab * spec.width : 0
  const extra =
    blockRuns(spec.layers).reduce((s, run) => s + run.count * blockExtraFlops(run.block, dims), 0) +
    posencModule(spec.posenc).flops(spec.posenc, dims) +
    (policy ? policyModule(policy).flops(policy, dims.layers, dims) : 0)
  const forward = 2 * (matmulWeights + tiedHead) + extra
  return { forward, training: 3 * forward }
}

export const posencParamsCount = (spec: DecoderSpec): number =>
  Object.values(posencModule(spec.posenc).params(spec.posenc, dimsOf(spec))).reduce((s, d) => s + size(d), 0)
