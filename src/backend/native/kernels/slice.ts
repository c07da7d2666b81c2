import * as tf from "@tensorflow/tfjs"
import { f32, type NativeKernel, type NativeKernelEntry, sizeOf } from "../kernel.js"
import type { NativeBackend } from "../backend.js"

/** Copies the box begin .. begin + size of a float32 tensor into a new output. */
const box = (backend: NativeBackend, x: tf.TensorInfo, xv: Float32Array, begin: readonly number[], size: readonly number[]): tf.TensorInfo => {
  const out = backend.output(sizeOf(size))
  backend.addon.slice(xv, x.shape, begin, size, out)
  return backend.out(size, out)
}

/**
 * Slice of a float32 tensor. The stock kernel copies element by element through index
 * arithmetic (a band of blocked attention spent most of its step there); this copies
 * contiguous runs, and always into a fresh buffer, never a view of the input.
 */
const slice: NativeKernel = (args, fallback) => {
  const { inputs, backend, attrs } = args
  const x = inputs.x as tf.TensorInfo
  const xv = f32(backend, x)
  if (!xv) return fallback(args)
  const [begin, size] = tf.slice_util.parseSliceParams(x as tf.Tensor, attrs.begin as number[], attrs.size as number[])
  tf.slice_util.assertParamsValid(x as tf.Tensor, begin, size)
  return box(backend, x, xv, begin, size)
}

/** Split along one axis (e.g. the gradient of concat): one native slice per piece. */
const splitV: NativeKernel = (args, fallback) => {
  const { inputs, backend, attrs } = args
  const x = inputs.x as tf.TensorInfo
  const xv = f32(backend, x)
  if (!xv) return fallback(args)
  const axis = tf.util.parseAxisParam(attrs.axis as number, x.shape)[0]
  const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, attrs.numOrSizeSplits as number[] | number, axis)
  const begin = x.shape.map(() => 0)
  return sizes.map((s) => {
    const size = x.shape.map((d, i) => (i === axis ? s : d))
    const piece = box(backend, x, xv, begin, size)
    begin[axis] += s
    return piece
  })
}

export const sliceKernels: readonly NativeKernelEntry[] = [
  { kernelName: "Slice", kernel: slice },
  { kernelName: "SplitV", kernel: splitV },
]
