import * as tf from "@tensorflow/tfjs"
import { depthCosts } from "../../dsl/costs.js"
import { blocksOf, type DecoderSpec, dimsOf } from "../../dsl/nodes.js"
import { blockChildNames } from "../../dsl/params.js"
import type { NativeAddon, RotationTables } from "../backend/native/addon.js"
import type { NativeBackend } from "../backend/native/backend.js"
import { NATIVE_BACKEND } from "../backend/native/register.js"
import type { DecodeCache, ParamValues } from "../model/compile.js"
import type { ParamView } from "../model/kind.js"
import { KvBuffer } from "../attention/kv-buffer.js"
import { traceExits } from "../depth/early-exit.js"
import { traceRouting } from "../depth/mixture-of-depths.js"
import type { DepthTrace } from "../depth/trace.js"
import { posencApply } from "../posenc/index.js"
import { emitEarlyExit } from "./early-exit.js"
import { emitLayer } from "./layers.js"
import { emitMixtureOfDepths } from "./mixture-of-depths.js"
import { nativePosition } from "./position.js"
import { ACT_CAP, type AttentionSlot, type BuiltProgram, OP, ProgramBuilder } from "./program.js"
import { type Step, valuesOf } from "./step.js"
import type { Weights } from "./weights.js"

/**
 * Incremental decoding on the native backend, for generation at batch 1 or a few sequences.
 * Under tfjs each token costs hundreds of small ops whose overhead dwarfs their arithmetic;
 * here the whole stack is one native program (src/decode/program.ts) per call: norms, FFNs,
 * and attention of every kind with every position scheme it accepts — over the cache's
 * preallocated buffers, written in place, then the output head; the logits come back as one
 * array. Matmuls are fp32 whatever TFJS_NATIVE_BF16 says; TFJS_NATIVE_DECODE=0 turns the path
 * off (generation then runs on tfjs ops, the reference this path is tested against);
 * `weights: "int8"` asks for a program whose products' weights and activations are int8
 * (src/decode/weights.ts), a program per parameter set and precision. A depth policy that
 * runs every block at inference (LayerDrop) is a plain stack here; early exit is computed in
 * the program (src/decode/early-exit.ts), and so is mixture-of-depths' routing
 * (src/decode/mixture-of-depths.ts), a routed block's attention of any kind and position
 * scheme at its own held length; the trace is told what each position spent.
 */
export interface NativeDecoder {
  /** Whether the next call can run here: the native backend is current and the path is not turned off. */
  readonly usable: () => boolean
  /** Logits [B, T, V] of tokens [B, T] that continue the cache's sequence; advances the cache, and counts the compute spent in the trace. */
  readonly apply: (params: ParamValues, tokens: tf.Tensor2D, cache: DecodeCache, trace?: DepthTrace, weights?: Weights) => tf.Tensor3D
  /** The same for one sequence of ids, without tensors: the last position's logits [V], in an array of the cache's that the next call overwrites. */
  readonly last: (params: ParamValues, ids: readonly number[], cache: DecodeCache, trace?: DepthTrace, weights?: Weights) => Float32Array
}

/** A row's exit that the replay leaves to its confidence (native/kernels.h Program::kFree). */
const FREE = -2147483648

/** The cache buffers of a native attention layer, made on its first call and checked against this one (holding `offset` positions). */
const buffers = (step: Step, slot: AttentionSlot, offset: number): [KvBuffer, KvBuffer] => {
  const kv = step.cache.slot(slot.prefix)
  const capacity = Math.max(step.t, step.dims.context)
  kv.k ??= new KvBuffer(step.batch, slot.heads, slot.dim ?? slot.dh, capacity)
  kv.v ??= new KvBuffer(step.batch, slot.heads, slot.dim ?? slot.dh, capacity)
  const [k, v] = [kv.k, kv.v]
  if (k.batch !== step.batch || k.length !== offset || v.length !== offset)
    throw new Error(`${slot.prefix}: the decoding cache holds ${k.length} positions of batch ${k.batch}, not ${offset} of batch ${step.batch}`)
  k.reserve(step.t)
  v.reserve(step.t)
  return [k, v]
}

/** Which keys each new query from `offset` sees, [heads, t, offset + t] (1: visible), for a masked kind. */
const maskOf = (slot: AttentionSlot, step: Step, offset: number): Uint8Array | null => {
  const visible = slot.visible
  if (visible === undefined) return null
  const keys = offset + step.t
  const mask = new Uint8Array(slot.heads * step.t * keys)
  for (let h = 0; h < slot.heads; h++)
    for (let i = 0; i < step.t; i++)
      for (let j = 0; j <= offset + i; j++) mask[(h * step.t + i) * keys + j] = visible(h, offset + i, j) ? 1 : 0
  return mask
}

/** The decoder for a validated spec. */
export const nativeDecoder = (spec: DecoderSpec): NativeDecoder => {
  const position = nativePosition(spec.posenc)
  const posenc = posencApply(spec.posenc)
  const dims = dimsOf(spec)
  const blocks = blocksOf(spec.layers)
  const programs = { fp32: new WeakMap<ParamValues, BuiltProgram>(), int8: new WeakMap<ParamValues, BuiltProgram>() }
  const costs = depthCosts(spec)
  const policy = spec.layers.policy
  const exit = policy?.kind === "early-exit" ? policy : undefined
  const routing = policy?.kind === "mixture-of-depths" ? policy : undefined
  // Which block each row left after, for the trace; grown to the largest call.
  let exits = new Int32Array(0)

  /** The stack, the final norm and the head as one program, with these parameters. */
  const build = (addon: NativeAddon, params: ParamValues, weights: Weights): BuiltProgram => {
    const b = new ProgramBuilder(params)
    let x = b.register(spec.width)
    if (exit !== undefined) return b.build(addon, emitEarlyExit(b, spec, exit, costs, x), position.bias !== undefined, weights)
    if (routing !== undefined) x = emitMixtureOfDepths(b, spec, routing, x)
    else
      blocks.forEach((block, i) => {
        const names = blockChildNames(block.layers)
        block.layers.forEach((layer, j) => (x = emitLayer(b, layer, `blocks.${i}.${names[j]}`, x, { width: spec.width, index: i, posenc: spec.posenc })))
      })
    const h = emitLayer(b, spec.norm, "norm", x, { width: spec.width, index: dims.layers, posenc: spec.posenc })
    // The tied head multiplies by the embedding [vocab, width], already one row per output.
    const head = spec.tied ? b.param("embed.tokens") : b.param("head.weight", true)
    const logits = b.register(spec.vocab)
    b.op({ code: OP.linear, x: h, targets: [{ w: head.index, bias: -1, y: logits }] })
    if (spec.softcap === undefined) return b.build(addon, logits, position.bias !== undefined, weights)
    const capped = b.register(spec.vocab)
    b.op({ code: OP.act, x: logits, y: capped, act: ACT_CAP, alpha: spec.softcap })
    return b.build(addon, capped, position.bias !== undefined, weights)
  }

  // Rotation tables of positions 0.., per head size, made again when a cache outgrows them.
  const tables = new Map<number, { readonly positions: number; readonly tables: RotationTables }>()
  const tablesFor = (dh: number, positions: number): RotationTables | null => {
    const rotary = position.rotary
    if (rotary === undefined) return null
    let held = tables.get(dh)
    if (held === undefined || held.positions < positions) tables.set(dh, (held = { positions, tables: rotary.tables(spec.posenc, positions, dh) }))
    return held.tables
  }

  /** Binds a slot to its cache, tables and state, unless the program already has these very arrays. */
  const bind = (addon: NativeAddon, program: BuiltProgram, slot: number, [k, v]: [KvBuffer, KvBuffer], dh: number, state: Float32Array | undefined): void => {
    const rotation = tablesFor(dh, k.capacity)
    const b = program.bound[slot]
    if (b !== undefined && b.k === k.data && b.v === v.data && b.capacity === k.capacity && b.tables === rotation && b.state === state) return
    addon.decodeBind(program.handle, slot, k.data, v.data, k.capacity, rotation, tables.get(dh)?.positions ?? 0)
    if (state !== undefined) addon.decodeState(program.handle, slot, state)
    program.bound[slot] = { k: k.data, v: v.data, capacity: k.capacity, tables: rotation, state }
  }

  /** A slot's running state, made zero (nothing compressed) with its cache. */
  const stateOf = (slot: AttentionSlot, step: Step): Float32Array | undefined => {
    if (slot.state === undefined) return undefined
    const kv = step.cache.slot(slot.prefix)
    kv.compressed ??= new Float32Array(1 + step.batch * slot.state)
    return kv.compressed
  }

  const programFor = (addon: NativeAddon, params: ParamValues, weights: Weights): BuiltProgram => {
    let program = programs[weights].get(params)
    if (program === undefined || !program.current(params)) programs[weights].set(params, (program = build(addon, params, weights)))
    return program
  }

  // A cache's keys and values hold for the parameters it was filled with, so the program is
  // checked against the parameters when a sequence starts, not at every token.
  const inUse = new WeakMap<DecodeCache, { readonly params: ParamValues; readonly weights: Weights; readonly program: BuiltProgram }>()
  const programOf = (addon: NativeAddon, params: ParamValues, cache: DecodeCache, weights: Weights): BuiltProgram => {
    const held = inUse.get(cache)
    if (held !== undefined && held.params === params && held.weights === weights && cache.length > 0) return held.program
    const program = programFor(addon, params, weights)
    inUse.set(cache, { params, weights, program })
    return program
  }

  const embed = (ids: ArrayLike<number>, step: Step): Float32Array => {
    const d = spec.width
    const table = step.values("embed.tokens")
    const x = new Float32Array(ids.length * d)
    for (let r = 0; r < ids.length; r++) {
      const id = ids[r]!
      if (!(Number.isInteger(id) && id >= 0 && id < spec.vocab)) throw new Error(`token ${id} at row ${r} is outside the vocabulary [0, ${spec.vocab})`)
      x.set(table.subarray(id * d, (id + 1) * d), r * d)
    }
    position.embed?.(spec.posenc, x, step)
    return x
  }

  /** Runs the program on ids [batch · t] continuing the cache and advances it; the logits are then in program.result. */
  const run = (params: ParamValues, ids: ArrayLike<number>, batch: number, t: number, cache: DecodeCache, trace: DepthTrace | undefined, weights: Weights): BuiltProgram => {
    const addon = (tf.backend() as NativeBackend).addon
    const program = programOf(addon, params, cache, weights)
    const memo = new Map<string, unknown>()
    const posView: ParamView = (name) => {
      const p = params[`posenc.${name}`]
      if (p === undefined) throw new Error(`parameter "posenc.${name}" is missing`)
      return p
    }
    const step: Step = {
      dims,
      params,
      cache,
      batch,
      t,
      offset: cache.length,
      position: posenc.hooks?.(posView, spec.posenc, dims) ?? {},
      values: (name) => valuesOf(params, name),
      memo: <T>(key: string, make: () => T): T => {
        if (!memo.has(key)) memo.set(key, make())
        return memo.get(key) as T
      },
    }
    const x = embed(ids, step)
    // A routed block's attention holds the positions routed through it.
    const held = (slot: AttentionSlot) => (slot.routed === undefined ? step.offset : (cache.held.get(`blocks.${slot.routed}`) ?? 0))
    const caches = program.slots.map((slot) => buffers(step, slot, held(slot)))
    program.slots.forEach((slot, i) => bind(addon, program, i, caches[i]!, slot.dh, stateOf(slot, step)))
    // A routed block's queries are its routed positions, from its held length: the program takes the first rows of these.
    const extras = program.extras ? program.slots.flatMap((slot) => [position.bias?.(spec.posenc, step, slot.heads, held(slot)) ?? null, maskOf(slot, step, held(slot))]) : null
    if (exit !== undefined) addon.decodeForce(program.handle, forcedExits(trace, batch, t, step.offset))
    if (routing !== undefined) addon.decodeOffsets(program.handle, Int32Array.from(program.slots, held))
    addon.decodeStart(program.handle, x, batch, t, step.offset, extras)
    const routed = routing === undefined ? undefined : routedCounts(addon, program, cache)
    program.slots.forEach((slot, i) => {
      const added = slot.routed === undefined ? t : routed![slot.routed]!
      caches[i]![0].length += added
      caches[i]![1].length += added
    })
    cache.length += t
    if (trace !== undefined) account(addon, program, trace, batch, t, routed)
    return program
  }

  /** Per block the positions the call routed through it, each routed block's held length advanced by them. */
  const routedCounts = (addon: NativeAddon, program: BuiltProgram, cache: DecodeCache): Int32Array => {
    const routed = new Int32Array(blocks.length)
    addon.decodeRouted(program.handle, routed)
    routed.forEach((k, i) => {
      if (k > 0) cache.held.set(`blocks.${i}`, (cache.held.get(`blocks.${i}`) ?? 0) + k)
    })
    return routed
  }

  /** Under a replay, the block each row must leave after (Program::kFree where the replay says nothing). */
  const forcedExits = (trace: DepthTrace | undefined, batch: number, t: number, offset: number): Int32Array | null => {
    const replay = trace?.replay.exits
    if (replay === undefined) return null
    return Int32Array.from({ length: batch * t }, (_, r) => replay[Math.floor(r / t)]?.[offset + (r % t)] ?? FREE)
  }

  /** What the call spent, as the tfjs path counts it: the plain stack's compute, each position's exit, or the routing. */
  const account = (addon: NativeAddon, program: BuiltProgram, trace: DepthTrace, batch: number, t: number, routed: Int32Array | undefined): void => {
    if (routing !== undefined) return traceRouting(routing, spec, costs, routed!, batch * t, trace)
    if (exit === undefined) return trace.dense(costs, batch * t)
    if (exits.length < batch * t) exits = new Int32Array(batch * t)
    addon.decodeExits(program.handle, exits)
    traceExits(exit, costs, exits, batch, t, trace)
  }

  const apply = (params: ParamValues, tokens: tf.Tensor2D, cache: DecodeCache, trace?: DepthTrace, weights: Weights = "fp32"): tf.Tensor3D => {
    const [batch, t] = tokens.shape
    if (tokens.dtype !== "int32") throw new Error(`tokens must be int32, got ${tokens.dtype}`)
    const program = run(params, tokens.dataSync(), batch, t, cache, trace, weights)
    const logits = new Float32Array(batch * t * spec.vocab)
    ;(tf.backend() as NativeBackend).addon.decodeRegister(program.handle, program.result, logits, 0)
    return tf.tensor3d(logits, [batch, t, spec.vocab])
  }

  // One array per cache for the last logits: a fresh vocabulary-sized array per token (its
  // allocation, zeroing and collection) cost as much as the rest of a step's JavaScript.
  const lastLogits = new WeakMap<DecodeCache, Float32Array>()

  const last = (params: ParamValues, ids: readonly number[], cache: DecodeCache, trace?: DepthTrace, weights: Weights = "fp32"): Float32Array => {
    const program = run(params, ids, 1, ids.length, cache, trace, weights)
    let out = lastLogits.get(cache)
    if (out === undefined) lastLogits.set(cache, (out = new Float32Array(spec.vocab)))
    ;(tf.backend() as NativeBackend).addon.decodeRegister(program.handle, program.result, out, (ids.length - 1) * spec.vocab)
    return out
  }

  return {
    usable: () => tf.getBackend() === NATIVE_BACKEND && process.env["TFJS_NATIVE_DECODE"] !== "0",
    apply,
    last,
  }
}
