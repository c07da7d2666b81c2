import type * as tf from "@tensorflow/tfjs"
import type { Visible } from "../../dsl/kind.js"
import type { DecodeProgram, NativeAddon, ProgramOp, ProgramParam, RotationTables } from "../backend/native/addon.js"
import type { ParamValues } from "../model/compile.js"
import { parameter, valuesOf } from "./step.js"
import type { Weights } from "./weights.js"

/**
 * A stack's layers as one native decoding program (native/program.cc): ops over registers
 * of [rows, width] activations, built once per parameter set. The program holds its own copy
 * of the parameters, matrices transposed so the streaming kernel reads one output's weights
 * contiguously, in one huge-page arena in the order the ops read them: a decoding step is a
 * pass over all of it, and in 4 KiB pages that pass spends much of its time on TLB misses and
 * prefetchers stopping at page boundaries. It is a second copy of the weights; a program built
 * for int8 weights (src/decode/weights.ts) stores the linear ops' matrices as int8 blocks.
 */

/** The op codes of native/kernels.h ProgramOp. */
export const OP = { norm: 0, linear: 1, attend: 2, act: 3, mul: 4, add: 5, window: 6, linformer: 7, gather: 8, scatter: 9, exit: 10, route: 11, combine: 12 } as const

/** The act op's code for the logit soft-cap alpha · tanh(x / alpha) (native/kernels.h ProgramOp::kCap). */
export const ACT_CAP = 5

/** An exit op's confidence measures (native/kernels.h ProgramOp). */
export const MEASURE = { softmax: 0, saturation: 1, last: 2 } as const

/** An attention layer the program computes, and what each call must give it. */
export interface AttentionSlot {
  readonly prefix: string
  readonly heads: number
  readonly dh: number
  /** The kind's pattern for a mask, or undefined for dense causal attention. */
  readonly visible: Visible | undefined
  /** Cache floats per head and position when not dh (Longformer's [k | k_g]). */
  readonly dim?: number
  /** Floats of running state per sequence (a causal Linformer's compressed keys and values). */
  readonly state?: number
  /** Mixture-of-depths: the routed block it belongs to, whose cache holds the positions routed through it. */
  readonly routed?: number
}

export class ProgramBuilder {
  readonly ops: ProgramOp[] = []
  readonly widths: number[] = []
  readonly slots: AttentionSlot[] = []
  private readonly params: { readonly name: string | undefined; readonly param: ProgramParam }[] = []
  private readonly indices = new Map<string, number>()
  /** While set, the ops emitted run on the compact rows: early exit's still running (after a block's last attention), mixture-of-depths' routed. */
  compact = false

  constructor(readonly source: ParamValues) {}

  register(width: number): number {
    this.widths.push(width)
    return this.widths.length - 1
  }

  /** A model parameter's index, its shape, copied once (transposed when asked: a weight [in, out] as [out, in]). */
  param(name: string, transpose = false): { index: number; rows: number; cols: number } {
    const t = parameter(this.source, name)
    const [rows, cols] = t.shape.length === 2 ? (t.shape as [number, number]) : [1, t.size]
    const key = `${name}${transpose ? " ᵀ" : ""}`
    let index = this.indices.get(key)
    if (index === undefined) {
      index = this.params.push({ name, param: { values: valuesOf(this.source, name), rows, cols, transpose } }) - 1
      this.indices.set(key, index)
    }
    return transpose ? { index, rows: cols, cols: rows } : { index, rows, cols }
  }

  /** An index for values that are not a model parameter (ALiBi's slopes). */
  constant(values: Float32Array): number {
    return this.params.push({ name: undefined, param: { values, rows: 1, cols: values.length, transpose: false } }) - 1
  }

  op(op: ProgramOp): void {
    this.ops.push(this.compact ? { ...op, compact: true } : op)
  }

  /** The program, whose attention slots need a score bias per call (`withBias`) or masks (kinds with a pattern), its products' weights stored as `weights` says. */
  build(addon: NativeAddon, result: number, withBias: boolean, weights: Weights): BuiltProgram {
    const handle = addon.decodeProgram(
      this.ops,
      this.widths,
      result,
      this.params.map((p) => p.param),
      weights === "int8",
    )
    const sources = this.params.flatMap((p) => (p.name === undefined ? [] : [[p.name, parameter(this.source, p.name)] as const]))
    const extras = this.slots.length > 0 && (withBias || this.slots.some((s) => s.visible !== undefined))
    return new BuiltProgram(handle, this.slots, result, extras, sources)
  }
}

/** What a slot was last bound to (decodeBind); kept here so the arrays outlive the binding. */
export interface Binding {
  readonly k: Float32Array
  readonly v: Float32Array
  readonly capacity: number
  readonly tables: RotationTables | null
  readonly state: Float32Array | undefined
}

export class BuiltProgram {
  private readonly copied: ReadonlyArray<readonly [name: string, tensor: tf.Tensor, dataId: object]>
  readonly bound: (Binding | undefined)[]

  constructor(
    readonly handle: DecodeProgram,
    readonly slots: readonly AttentionSlot[],
    readonly result: number,
    /** Whether each call passes per-slot score biases and masks. */
    readonly extras: boolean,
    sources: ReadonlyArray<readonly [string, tf.Tensor]>,
  ) {
    this.copied = sources.map(([name, t]) => [name, t, t.dataId] as const)
    this.bound = slots.map(() => undefined)
  }

  /** Whether these are still the parameters, with the storage, the program copied. */
  current(params: ParamValues): boolean {
    return this.copied.every(([name, t, id]) => params[name] === t && t.dataId === id && !t.isDisposed)
  }
}
