import type * as tf from "@tensorflow/tfjs"
import { f32, i32, type NativeKernel, type NativeKernelEntry, sizeOf } from "../kernel.js"

/**
 * Tile (and so broadcastTo) of a float32 or int32 tensor by copying contiguous runs, one pass
 * per repeated axis: along axis a, each run of the axes from a on is written reps[a] times in a
 * row. The stock kernel computes every element's source index (copying Linformer's shared E to
 * four heads, 2 M values, took about 115 ms).
 */
const tile: NativeKernel = (args, fallback) => {
  const { inputs, backend, attrs } = args
  const x = inputs.x as tf.TensorInfo
  const reps = attrs.reps as number[]
  const values = f32(backend, x) ?? i32(backend, x)
  if (values === undefined || reps.length !== x.shape.length) return fallback(args)
  const shape = [...x.shape]
  let current: Float32Array | Int32Array = values
  for (let a = shape.length - 1; a >= 0; a--) {
    const r = reps[a]!
    if (r === 1) continue
    const rows = sizeOf(shape.slice(0, a))
    const run = sizeOf(shape.slice(a))
    const next: Float32Array | Int32Array = current instanceof Float32Array ? new Float32Array(rows * run * r) : new Int32Array(rows * run * r)
    for (let p = 0; p < rows; p++) {
      const row = current.subarray(p * run, (p + 1) * run)
      for (let c = 0; c < r; c++) next.set(row, (p * r + c) * run)
    }
    shape[a] = shape[a]! * r
    current = next
  }
  // A copy even when nothing repeats: the output is a tensor of its own.
  return backend.makeTensorInfo(shape, x.dtype, current === values ? current.slice() : current)
}

export const tileKernels: readonly NativeKernelEntry[] = [{ kernelName: "Tile", kernel: tile }]
