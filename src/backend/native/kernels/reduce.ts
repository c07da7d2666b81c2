import * as tf from "@tensorflow/tfjs"
import type { NativeBackend } from "../backend.js"
import { f32, sizeOf, type NativeKernel, type NativeKernelEntry } from "../kernel.js"

/** Op codes of native/kernels.h (RedOp), by kernel name and the attribute holding the axes. */
const OPS: ReadonlyArray<readonly [kernelName: string, code: number, axisAttr: string]> = [
  ["Sum", 0, "axis"],
  ["Mean", 1, "axis"],
  ["Max", 2, "reductionIndices"],
  ["Min", 3, "axis"],
  ["Prod", 4, "axis"],
]

const SUM_OR_MEAN = new Set([0, 1, 4])

/**
 * Reduces the given axes. A contiguous block of axes is reduced in place as
 * [outer, reduced, inner]; scattered axes are first transposed to the end.
 */
const reduceValues = (backend: NativeBackend, code: number, x: Float32Array, shape: readonly number[], axes: number[]): Float32Array => {
  const rank = shape.length
  const contiguous = axes.every((a, i) => i === 0 || a === axes[i - 1] + 1)
  const kept = shape.filter((_, i) => !axes.includes(i))
  const out = backend.output(sizeOf(kept))
  if (contiguous) {
    const first = axes[0] ?? rank
    const last = axes.length === 0 ? rank : axes[axes.length - 1] + 1
    const outer = sizeOf(shape.slice(0, first))
    const r = sizeOf(shape.slice(first, last))
    const inner = sizeOf(shape.slice(last))
    backend.addon.reduce(code, x, out, outer, r, inner)
    return out
  }
  const perm = [...shape.keys()].filter((i) => !axes.includes(i)).concat(axes)
  const moved = backend.output(x.length)
  backend.addon.transpose(x, shape, perm, moved)
  backend.addon.reduce(code, moved, out, sizeOf(kept), sizeOf(axes.map((a) => shape[a])), 1)
  backend.pool.giveBack(moved)
  return out
}

const reduce =
  (code: number, axisAttr: string): NativeKernel =>
  (args, fallback) => {
    const { inputs, backend, attrs } = args
    const x = inputs.x as tf.TensorInfo
    const xv = f32(backend, x)
    if (!xv) return fallback(args)
    const axes = tf.util.parseAxisParam(attrs[axisAttr] as number | number[], x.shape).sort((p, q) => p - q)
    const reduced = sizeOf(axes.map((a) => x.shape[a]))
    // Stock max/min of an empty set read past the data; match it by delegating.
    if (reduced === 0 && !SUM_OR_MEAN.has(code)) return fallback(args)
    // Stock mean divides each element by the count before summing: an empty mean is 0.
    const op = reduced === 0 && code === 1 ? 0 : code
    const out = reduceValues(backend, op, xv, x.shape, axes)
    const [outShape] = tf.backend_util.computeOutAndReduceShapes(x.shape, axes)
    const shape = attrs.keepDims ? tf.backend_util.expandShapeToKeepDim(outShape, axes) : outShape
    return backend.out(shape, out)
  }

export const reduceKernels: readonly NativeKernelEntry[] = OPS.map(([kernelName, code, axisAttr]) => ({
  kernelName,
  kernel: reduce(code, axisAttr),
}))
