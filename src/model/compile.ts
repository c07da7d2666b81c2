import * as tf from "@tensorflow/tfjs"
import { match } from "ts-pattern"
import { depthCosts, keyValueSplit } from "../../dsl/costs.js"
import { validateSpec } from "../../dsl/decode.js"
import { posencModule } from "../../dsl/kinds/posenc/index.js"
import { blocksOf, type DecoderSpec, dimsOf, type Layer } from "../../dsl/nodes.js"
import { blockChildNames, blockParams, childNames, flopsPerToken, type Flops, type NamedParam, type ParamCounts, paramCounts, paramName, paramTable } from "../../dsl/params.js"
import { attentionApply } from "../attention/index.js"
import { nativeDecoder } from "../decode/native-decoder.js"
import type { Weights } from "../decode/weights.js"
import { depthForward, depthObjective } from "../depth/index.js"
import type { DepthOutput } from "../depth/compute.js"
import { rowsOf } from "../depth/rows.js"
import type { DepthTrace } from "../depth/trace.js"
import { applyFfn } from "../ffn/ffn.js"
import { normApply } from "../norm/index.js"
import { posencApply } from "../posenc/index.js"
import { initParams, type Params } from "./init.js"
import type { AttendedRows, KvSlot, LayerCtx, ParamView, PositionHooks } from "./kind.js"
import { crossEntropy } from "./loss.js"
import { recompute } from "./recompute.js"

/**
 * The interpreter: a pure mapping from a decoder spec to the functions that compute it.
 * Nothing here holds state; parameters are passed in, and the only mutable object is the
 * decoding cache that the caller owns.
 */
export type ParamValues = Readonly<Record<string, tf.Tensor>>

export interface ForwardOptions {
  /** Enables dropout. */
  readonly training?: boolean
  /** Seeds this call's dropout masks; a training step passes its own. */
  readonly dropoutSeed?: number
  /** Incremental decoding: tokens continue the sequence the cache holds. */
  readonly cache?: DecodeCache
  /** Counts the compute spent (and records a depth policy's decisions, or replays them). */
  readonly trace?: DepthTrace
  /** Sees the input of every matrix product, by the weight's full name (activation statistics for pruning). */
  readonly probe?: (weight: string, input: tf.Tensor2D) => void
  /** Sees each block's output [B, T, width] (hidden-state distillation reads chosen ones). */
  readonly blockOutputs?: (index: number, x: tf.Tensor3D) => void
  /**
   * Frees each block's intermediate tensors as soon as the block is done, keeping its output:
   * for a forward pass no gradient follows (a distillation teacher's), whose activations
   * would otherwise all live until the caller's tidy ends. Training without a cache or probe
   * always does (the tape keeps what the backward pass reads).
   */
  readonly blockwise?: boolean
  /** How the products' weights are stored (src/decode/weights.ts); "int8" only on the native decode program, with a cache. Default fp32. */
  readonly weights?: Weights
}

/** Keys and values of every attention layer so far, for generation one token at a time. */
export class DecodeCache {
  private readonly slots = new Map<string, KvSlot>()
  length = 0
  /** Positions held by each block that sees only some tokens (mixture-of-depths), by block prefix. */
  readonly held = new Map<string, number>()

  slot(name: string): KvSlot {
    let s = this.slots.get(name)
    if (s === undefined) this.slots.set(name, (s = {}))
    return s
  }

  dispose(): void {
    this.slots.clear()
    this.held.clear()
    this.length = 0
  }
}

export interface Batch {
  /** [B, T+1] int32: inputs are the first T columns, targets the last T. */
  readonly tokens: tf.Tensor2D
  /** [B, T] float32: 1 where the target counts in the loss, 0 for padding. */
  readonly mask: tf.Tensor2D
}

/** A loss of logits [N, V] against targets [N] int32, rows weighted by weights [N] (0 for padding). */
export type LossTerm = (logits: tf.Tensor2D, targets: tf.Tensor1D, weights: tf.Tensor1D) => tf.Scalar

export interface Model {
  readonly spec: DecoderSpec
  readonly table: ReadonlyArray<NamedParam>
  readonly counts: ParamCounts
  readonly flops: Flops
  /** Longest sequence the position scheme can represent; undefined when unbounded. */
  readonly maxLength: number | undefined
  /** Seeded parameters as trainable variables. */
  readonly init: (seed: number) => Params
  /** Logits [B, T, V] for tokens [B, T]. */
  readonly apply: (params: ParamValues, tokens: tf.Tensor2D, options?: ForwardOptions) => tf.Tensor3D
  /**
   * The training objective of the batch: `term` (default: the mean cross-entropy in nats of
   * the targets, padding excluded) of the logits, composed with a depth policy's own objective
   * (its weighted exits, its auxiliary loss) exactly as for cross-entropy, so every objective
   * built on it trains the policy's parameters too.
   */
  readonly loss: (params: ParamValues, batch: Batch, options?: ForwardOptions, term?: LossTerm) => tf.Scalar
  /**
   * The last position's logits for ids that continue the cache's sequence (one sequence),
   * computed without tensors by the native decoder (src/decode/) when it runs, in an array of
   * the cache's that the next call overwrites; undefined otherwise (then use apply).
   */
  readonly decodeNative: (params: ParamValues, ids: readonly number[], cache: DecodeCache, trace?: DepthTrace, weights?: Weights) => Float32Array | undefined
  /** Whether the native decode program computes this model now (the native backend, TFJS_NATIVE_DECODE not 0): what int8 weights need. */
  readonly decodesNatively: () => boolean
}

const viewOf = (params: ParamValues, prefix: string, probe?: ForwardOptions["probe"]): ParamView => {
  const view = (name: string) => {
    const full = paramName(prefix, name)
    const t = params[full]
    if (t === undefined) throw new Error(`parameter "${full}" is missing`)
    return t
  }
  return probe === undefined ? view : Object.assign(view, { probe: (weight: string, input: tf.Tensor2D) => probe(paramName(prefix, weight), input) })
}

export const compile = (input: DecoderSpec): Model => {
  const spec = validateSpec(input)
  const dims = dimsOf(spec)
  const table = paramTable(spec)
  const posenc = posencApply(spec.posenc)
  const maxLength = posencModule(spec.posenc).maxLength?.(spec.posenc, dims)
  const blocks = blocksOf(spec.layers)
  /** With checkpointing, the parameters each block reads: its own, model-wide ones it declares, and the position scheme's in attention. */
  const posencReads = posenc.hooks ? table.filter((p) => p.name.startsWith("posenc.")).map((p) => p.name) : []
  const blockReads = spec.checkpoint === "blocks" ? blocks.map((block, i) => [...blockParams(block, dims, i).map((p) => p.name), ...posencReads]) : []
  const costs = depthCosts(spec)
  const splits = blocks.map(keyValueSplit)
  // The native program computes the plain stack and every depth policy (LayerDrop's is the plain stack at inference).
  const fast = nativeDecoder(spec)

  const int8Refused = (): Error =>
    new Error(`int8 weights run on the native decode program only (the native backend, TFJS_NATIVE_DECODE not 0, with a decoding cache)`)

  const checkLength = (length: number): void => {
    if (maxLength !== undefined && length > maxLength) {
      throw new Error(`sequence of ${length} tokens is longer than the ${maxLength} positions posenc "${spec.posenc.kind}" supports`)
    }
  }

  /** The logits, and under a depth policy in training, the terms of its objective. */
  const forward = (params: ParamValues, tokens: tf.Tensor2D, options: ForwardOptions = {}): DepthOutput => {
    const [b, t] = tokens.shape
    const cache = options.cache
    const offset = cache?.length ?? 0
    checkLength(offset + t)
    const training = options.training ?? false
    // Probes and block outputs watch tfjs's ops, which the native program does not run.
    if (cache && !training && !options.probe && !options.blockOutputs && fast.usable()) {
      return { logits: fast.apply(params, tokens, cache, options.trace, options.weights) }
    }
    if (options.weights === "int8") throw int8Refused()
    let dropoutCalls = 0
    const seed = options.dropoutSeed ?? 0
    const dropout = (x: tf.Tensor, rate: number): tf.Tensor =>
      training && rate > 0 ? tf.dropout(x, rate, undefined, seed * 1_000_003 + dropoutCalls++) : x
    const posView = viewOf(params, "posenc")
    const position: PositionHooks = posenc.hooks?.(posView, spec.posenc, dims) ?? {}
    const blockInputs = (i: number): tf.Tensor[] =>
      blockReads[i]!.map((name) => {
        const t = params[name]
        if (t === undefined) throw new Error(`parameter "${name}" is missing`)
        return t
      })

    const layerCtx = (prefix: string, layerIndex: number, at: number): LayerCtx => ({
      dims,
      layer: layerIndex,
      training,
      position,
      offset: at,
      dropout,
      ...(cache ? { kv: cache.slot(prefix) } : {}),
    })
    const applyLayer = (layer: Layer, x: tf.Tensor3D, prefix: string, layerIndex: number, at: number): tf.Tensor3D => {
      const ctx = layerCtx(prefix, layerIndex, at)
      return match(layer)
        .with({ op: "attention" }, (l) => attentionApply(l).apply(viewOf(params, prefix, options.probe), x, l, ctx))
        .with({ op: "ffn" }, (l) => applyFfn(viewOf(params, prefix, options.probe), x, l, ctx))
        .with({ op: "norm" }, (l) => normApply(l).apply(viewOf(params, prefix), x, l) as tf.Tensor3D)
        .with({ op: "residual" }, (l) => {
          const names = childNames(l.body)
          const branch = l.body.reduce((h, child, i) => applyLayer(child, h, `${prefix}.${names[i]}`, layerIndex, at), x)
          return tf.add(x, dropout(branch, l.dropout)) as tf.Tensor3D
        })
        .exhaustive()
    }

    // Under a gradient tape what a layer saved outlives its tidy; a cache's keys and values and
    // a probe's statistics are made inside a layer and must outlive it.
    const tidyLayers = options.blockwise || (training && cache === undefined && options.probe === undefined)
    /** Layers [from, to) of block i, positions counted from `at`; each layer's intermediates freed when it is done. */
    const layers = (i: number, x: tf.Tensor3D, from = 0, to = blocks[i]!.layers.length, at = offset): tf.Tensor3D => {
      const names = blockChildNames(blocks[i]!.layers)
      return blocks[i]!.layers.slice(from, to).reduce((h, layer, j) => {
        const apply = () => applyLayer(layer, h, `blocks.${i}.${names[from + j]}`, i, at)
        return tidyLayers ? tf.tidy(apply) : apply()
      }, x)
    }
    // Probes would see the recomputation's inputs a second time.
    const checkpointed = spec.checkpoint === "blocks" && training && cache === undefined && options.probe === undefined
    /**
     * The layers recomputed in the backward pass, with the dropout masks of their first pass:
     * the recomputation counts dropout calls from where the first pass started, then the count
     * resumes where it was (it only grows, so the larger of the two).
     */
    const run: typeof layers = (i, x, from, to, at) => {
      const first = dropoutCalls
      const replay = (h: tf.Tensor3D): tf.Tensor3D => {
        const resume = dropoutCalls
        dropoutCalls = first
        const y = layers(i, h, from, to, at)
        dropoutCalls = Math.max(resume, dropoutCalls)
        return y
      }
      return checkpointed ? recompute(replay, x, blockInputs(i)) : layers(i, x, from, to, at)
    }
    /**
     * Block i on x [S, L, D] (positions from `offset`) for the rows `rows` of its S·L alone
     * (ascending), every row supplying its attention's keys and values: [rows.length, D], and
     * whether the other rows' queries attended too. Only for blocks with a key/value split
     * (dsl/costs.ts keyValueSplit), without a cache.
     */
    const runRows = (i: number, x: tf.Tensor3D, rows: ReadonlyArray<number>): AttendedRows => {
      const split = splits[i]
      if (split === undefined || cache) throw new Error(`block ${i}: its attention cannot take queries from some positions only`)
      const attendRows = attentionApply(split.attention).attendRows
      if (attendRows === undefined) throw new Error(`attention "${split.attention.kind}" declares keyValues but computes no attendRows`)
      const [s, l, d] = x.shape
      let all = false
      const apply = (): tf.Tensor2D => {
        const name = `blocks.${i}.${blockChildNames(blocks[i]!.layers)[0]}`
        const attend = (h: tf.Tensor3D, prefix: string): tf.Tensor3D => {
          const out = attendRows(viewOf(params, prefix, options.probe), h, rows, split.attention, layerCtx(prefix, i, offset))
          all = out.all
          return out.y.reshape([1, rows.length, d]) as tf.Tensor3D
        }
        const residual = split.residual
        let y: tf.Tensor3D
        if (residual === undefined) y = attend(x, name)
        else {
          const names = childNames(residual.body)
          const through = (h: tf.Tensor3D, from: number, to: number) =>
            residual.body.slice(from, to).reduce((acc, child, j) => applyLayer(child, acc, `${name}.${names[from + j]}`, i, offset), h)
          const branch = through(attend(through(x, 0, split.at), `${name}.${names[split.at]}`), split.at + 1, residual.body.length)
          const kept = rowsOf(x.reshape([s * l, d]) as tf.Tensor2D, rows).reshape([1, rows.length, d])
          y = tf.add(kept, dropout(branch, residual.dropout)) as tf.Tensor3D
        }
        return layers(i, y, 1).reshape([rows.length, d]) as tf.Tensor2D
      }
      const y = tidyLayers ? tf.tidy(apply) : apply()
      return { y, all }
    }
    const embedding = params["embed.tokens"] as tf.Tensor2D
    const finalNorm = (x: tf.Tensor3D): tf.Tensor2D => normApply(spec.norm).apply(viewOf(params, "norm"), x, spec.norm).reshape([x.shape[0] * x.shape[1], spec.width]) as tf.Tensor2D
    const softcap = spec.softcap
    const capLogits = (logits: tf.Tensor2D): tf.Tensor2D => (softcap === undefined ? logits : tf.mul(tf.tanh(tf.div(logits, softcap)), softcap))
    const lmHead = (h: tf.Tensor2D): tf.Tensor2D => capLogits(spec.tied ? tf.matMul(h, embedding, false, true) : tf.matMul(h, params["head.weight"] as tf.Tensor2D))

    let x = tf.gather(embedding, tokens.reshape([b * t])).reshape([b, t, spec.width]) as tf.Tensor3D
    if (posenc.embed) x = posenc.embed(posView, x, spec.posenc, offset)
    x = dropout(x, spec.dropout) as tf.Tensor3D
    if (spec.layers.policy) {
      const context = { spec, costs, training, seed, offset, run, runRows, finalNorm, lmHead, capLogits, param: (i: number, name: string) => viewOf(params, `blocks.${i}`)(name) }
      const out = depthForward(spec.layers.policy, x, { ...context, ...(cache ? { cache } : {}), ...(options.trace ? { trace: options.trace } : {}) })
      if (cache) cache.length += t
      return out
    }
    blocks.forEach((_, i) => {
      const input = x
      x = tidyLayers ? tf.tidy(() => run(i, input)) : run(i, input)
      options.blockOutputs?.(i, x)
    })
    options.trace?.dense(costs, b * t)
    const logits = lmHead(finalNorm(x))
    if (cache) cache.length += t
    return { logits: logits.reshape([b, t, spec.vocab]) as tf.Tensor3D }
  }

  const loss = (params: ParamValues, batch: Batch, options: ForwardOptions = {}, term: LossTerm = crossEntropy): tf.Scalar => {
    const [b, t1] = batch.tokens.shape
    const t = t1 - 1
    const inputs = tf.slice(batch.tokens, [0, 0], [b, t])
    const targets = tf.slice(batch.tokens, [0, 1], [b, t]).reshape([b * t]) as tf.Tensor1D
    const out = forward(params, inputs, options)
    const mask = batch.mask.reshape([b * t]) as tf.Tensor1D
    const of = (logits: tf.Tensor3D) => term(logits.reshape([b * t, spec.vocab]) as tf.Tensor2D, targets, mask)
    return out.objective ? depthObjective(out.objective, of) : of(out.logits)
  }

  const decodeNative = (params: ParamValues, ids: readonly number[], cache: DecodeCache, trace?: DepthTrace, weights?: Weights): Float32Array | undefined => {
    if (!fast.usable()) {
      if (weights === "int8") throw int8Refused()
      return undefined
    }
    checkLength(cache.length + ids.length)
    return fast.last(params, ids, cache, trace, weights)
  }

  return {
    spec,
    table,
    counts: paramCounts(spec),
    flops: flopsPerToken(spec),
    maxLength,
    init: (seed) => initParams(table, seed),
    apply: (params, tokens, options) => forward(params, tokens, options).logits,
    loss,
    decodeNative,
    decodesNatively: fast.usable,
  }
}
