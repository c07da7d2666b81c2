import * as tf from "@tensorflow/tfjs"
import { f32, i32, type NativeKernel, type NativeKernelEntry, sizeOf } from "../kernel.js"
import type { NativeBackend } from "../backend.js"

/**
 * Copies the box begin .. begin + size of a float32 or int32 tensor into a new output, or
 * undefined for other dtypes. A copy moves bits, so int32 (a batch's token ids, sliced into
 * inputs and targets every step) runs the float32 copy on the same bytes: the stock kernel
 * took milliseconds for a few thousand ids.
 */
const box = (backend: NativeBackend, x: tf.TensorInfo, begin: readonly number[], size: readonly number[]): tf.TensorInfo | undefined => {
  const xv = f32(backend, x)
  if (xv) {
    const out = backend.output(sizeOf(size))
    backend.addon.slice(xv, x.shape, begin, size, out)
    return backend.out(size, out)
  }
  const iv = i32(backend, x)
  if (!iv) return undefined
  const out = new Int32Array(sizeOf(size))
  backend.addon.slice(new Float32Array(iv.buffer, iv.byteOffset, iv.length), x.shape, begin, size, new Float32Array(out.buffer))
  return backend.makeTensorInfo([...size], "int32", out)
}

/**
 * Slice of a float32 or int32 tensor. The stock kernel copies element by element through index
 * arithmetic (a band of blocked attention spent most of its step there); this copies
 * contiguous runs, and always into a fresh buffer, never a view of the input.
 */
const slice: NativeKernel = (args, fallback) => {
  const { inputs, backend, attrs } = args
  const x = inputs.x as tf.TensorInfo
  const [begin, size] = tf.slice_util.parseSliceParams(x as tf.Tensor, attrs.begin as number[], attrs.size as number[])
  tf.slice_util.assertParamsValid(x as tf.Tensor, begin, size)
  return box(backend, x, begin, size) ?? fallback(args)
}

/** Split along one axis (e.g. the gradient of concat): one native slice per piece. */
const splitV: NativeKernel = (args, fallback) => {
  const { inputs, backend, attrs } = args
  const x = inputs.x as tf.TensorInfo
  if (!f32(backend, x) && !i32(backend, x)) return fallback(args)
  const axis = tf.util.parseAxisParam(attrs.axis as number, x.shape)[0]
  const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, attrs.numOrSizeSplits as number[] | number, axis)
  const begin = x.shape.map(() => 0)
  return sizes.map((s) => {
    const size = x.shape.map((d, i) => (i === axis ? s : d))
    const piece = box(backend, x, begin, size)!
    begin[axis] += s
    return piece
  })
}

export const sliceKernels: readonly NativeKernelEntry[] = [
  { kernelName: "Slice", kernel: slice },
  { kernelName: "SplitV", kernel: splitV },
]
