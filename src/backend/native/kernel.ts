import type * as tf from "@tensorflow/tfjs"
import type { NativeBackend } from "./backend.js"

export interface NativeKernelArgs {
  readonly inputs: tf.NamedTensorInfoMap
  readonly backend: NativeBackend
  readonly attrs: tf.NamedAttrMap
}

/** The stock cpu kernel, called whenever a native kernel does not cover its inputs. */
export type Fallback = (args: NativeKernelArgs) => tf.TensorInfo | tf.TensorInfo[]

export type NativeKernel = (args: NativeKernelArgs, fallback: Fallback) => tf.TensorInfo | tf.TensorInfo[]

/** A kernel override: the tfjs kernel name it replaces on the native backend. */
export interface NativeKernelEntry {
  readonly kernelName: string
  readonly kernel: NativeKernel
}

export const sizeOf = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1)

/** The tensor's values when it is float32 stored as a Float32Array, else undefined. */
export const f32 = (backend: NativeBackend, t: tf.TensorInfo): Float32Array | undefined => {
  if (t.dtype !== "float32") return undefined
  const v = backend.values(t)
  return v instanceof Float32Array ? v : undefined
}

export const i32 = (backend: NativeBackend, t: tf.TensorInfo): Int32Array | undefined => {
  if (t.dtype !== "int32") return undefined
  const v = backend.values(t)
  return v instanceof Int32Array ? v : undefined
}
