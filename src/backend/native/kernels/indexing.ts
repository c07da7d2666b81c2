import * as tf from "@tensorflow/tfjs"
import { f32, i32, sizeOf, type NativeKernel, type NativeKernelEntry } from "../kernel.js"

/** Gather along one axis (batchDims 0), e.g. embedding lookup. */
const gatherV2: NativeKernel = (args, fallback) => {
  const { inputs, backend, attrs } = args
  const x = inputs.x as tf.TensorInfo
  const indices = inputs.indices as tf.TensorInfo
  const iv = i32(backend, indices)
  const xv = backend.values(x)
  if (!iv || Number(attrs.batchDims ?? 0) !== 0) return fallback(args)
  const axis = tf.util.parseAxisParam(attrs.axis as number, x.shape)[0]
  const outer = sizeOf(x.shape.slice(0, axis))
  const dim = x.shape[axis]
  const inner = sizeOf(x.shape.slice(axis + 1))
  const shape = [...x.shape.slice(0, axis), ...indices.shape, ...x.shape.slice(axis + 1)]
  const n = sizeOf(shape)
  let out: Float32Array | Int32Array
  if (x.dtype === "float32" && xv instanceof Float32Array) out = backend.output(n)
  else if (x.dtype === "int32" && xv instanceof Int32Array) out = new Int32Array(n)
  else return fallback(args)
  // An out-of-range index: the stock kernel raises its own error message.
  if (backend.addon.gather(xv, iv, out, outer, dim, inner) >= 0) {
    if (out instanceof Float32Array) backend.pool.giveBack(out)
    return fallback(args)
  }
  return backend.makeTensorInfo(shape, x.dtype, out)
}

/**
 * Scatter-add by segment id (the gradient of gather): one pass over x instead of the stock
 * kernel's numSegments passes. Ids outside [0, numSegments) are dropped, as stock does.
 */
const unsortedSegmentSum: NativeKernel = (args, fallback) => {
  const { inputs, backend, attrs } = args
  const x = inputs.x as tf.TensorInfo
  const ids = inputs.segmentIds as tf.TensorInfo
  const xv = f32(backend, x)
  const iv = i32(backend, ids)
  if (!xv || !iv || ids.shape.length !== 1 || x.shape.length < 1 || x.shape[0] !== ids.shape[0]) return fallback(args)
  const numSegments = Number(attrs.numSegments)
  const inner = sizeOf(x.shape.slice(1))
  const out = backend.output(numSegments * inner)
  backend.addon.scatterAdd(xv, iv, out, ids.shape[0], inner, numSegments)
  return backend.out([numSegments, ...x.shape.slice(1)], out)
}

const oneHot: NativeKernel = (args, fallback) => {
  const { inputs, backend, attrs } = args
  const indices = inputs.indices as tf.TensorInfo
  const iv = i32(backend, indices)
  if (!iv || attrs.dtype !== "float32") return fallback(args)
  const depth = Number(attrs.depth)
  const out = backend.output(iv.length * depth)
  backend.addon.oneHot(iv, out, depth, Number(attrs.onValue), Number(attrs.offValue))
  return backend.out([...indices.shape, depth], out)
}

export const indexingKernels: readonly NativeKernelEntry[] = [
  { kernelName: "GatherV2", kernel: gatherV2 },
  { kernelName: "UnsortedSegmentSum", kernel: unsortedSegmentSum },
  { kernelName: "OneHot", kernel: oneHot },
]
