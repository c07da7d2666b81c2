import type * as tf from "@tensorflow/tfjs"
import type { Dims } from "../../dsl/kind.js"
import type { DecodeCache, ParamValues } from "../model/compile.js"
import type { PositionHooks } from "../model/kind.js"

/** What one native decoding call knows: the new tokens' shape and position, the cache, the parameters. */
export interface Step {
  readonly dims: Dims
  readonly params: ParamValues
  readonly cache: DecodeCache
  readonly batch: number
  /** New tokens per sequence. */
  readonly t: number
  /** Position of the first new token. */
  readonly offset: number
  /** The position scheme's tfjs hooks, for layers computed by tfjs and bias tables. */
  readonly position: PositionHooks
  /** A parameter's values (float32), as tfjs holds them. */
  readonly values: (name: string) => Float32Array
  /** Values computed once per call and shared by its layers (rotation tables of one head size). */
  readonly memo: <T>(key: string, make: () => T) => T
}

/** A float32 parameter. */
export const parameter = (params: ParamValues, name: string): tf.Tensor => {
  const t = params[name]
  if (t === undefined) throw new Error(`parameter "${name}" is missing`)
  if (t.dtype !== "float32") throw new Error(`parameter "${name}" is ${t.dtype}; native decoding reads float32`)
  return t
}

const read = new WeakMap<tf.Tensor, { readonly dataId: object; readonly values: Float32Array }>()

/** A parameter's values, read once per tensor and storage (an assigned variable gets a new storage, a new dataId). */
export const valuesOf = (params: ParamValues, name: string): Float32Array => {
  const t = parameter(params, name)
  const hit = read.get(t)
  if (hit !== undefined && hit.dataId === t.dataId && !t.isDisposed) return hit.values
  const values = t.dataSync() as Float32Array
  read.set(t, { dataId: t.dataId, values })
  return values
}
