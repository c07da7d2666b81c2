import * as tf from "@tensorflow/tfjs"
import { f32, type NativeKernel, type NativeKernelEntry, sizeOf } from "../kernel.js"

/**
 * Cumulative sum of a float32 tensor along any axis, in place of the stock kernel's transpose,
 * per-element index closures and transpose back (causal Linformer's prefix sums of compressed
 * blocks spent a third of its step there). Each output is the stock kernel's float32 sum in the
 * same order, so the bits are the same; the positions beside one another along the axis move
 * together, a contiguous run at a time.
 */
const cumsum: NativeKernel = (args, fallback) => {
  const { inputs, backend, attrs } = args
  const x = inputs.x as tf.TensorInfo
  const values = f32(backend, x)
  if (values === undefined) return fallback(args)
  const axis = tf.util.parseAxisParam(attrs.axis as number, x.shape)[0]!
  const exclusive = attrs.exclusive as boolean
  const reverse = attrs.reverse as boolean
  const n = x.shape[axis]!
  const inner = sizeOf(x.shape.slice(axis + 1))
  const outer = sizeOf(x.shape.slice(0, axis))
  const out = backend.output(values.length)
  if (inner === 1) {
    // Along the last axis: a running float32 sum per row (Math.fround rounds as a Float32Array store does).
    for (let o = 0; o < outer; o++) {
      let sum = 0
      for (let step = 0; step < n; step++) {
        const at = o * n + (reverse ? n - 1 - step : step)
        if (exclusive) {
          out[at] = sum
          sum = Math.fround(values[at]! + sum)
        } else {
          sum = step === 0 ? values[at]! : Math.fround(values[at]! + sum)
          out[at] = sum
        }
      }
    }
    return backend.out([...x.shape], out)
  }
  for (let o = 0; o < outer; o++) {
    const base = o * n * inner
    for (let step = 0; step < n; step++) {
      const at = base + (reverse ? n - 1 - step : step) * inner
      const prev = at + (reverse ? inner : -inner)
      for (let i = 0; i < inner; i++) {
        if (step === 0) out[at + i] = exclusive ? 0 : values[at + i]!
        else out[at + i] = exclusive ? values[prev + i]! + out[prev + i]! : values[at + i]! + out[prev + i]!
      }
    }
  }
  return backend.out([...x.shape], out)
}

export const cumsumKernels: readonly NativeKernelEntry[] = [{ kernelName: "Cumsum", kernel: cumsum }]
