import type * as tf from "@tensorflow/tfjs"
import { f32, type NativeKernel, type NativeKernelEntry } from "../kernel.js"

/** Constant padding of float32 tensors (e.g. the gradient of a slice). */
const padV2: NativeKernel = (args, fallback) => {
  const { inputs, backend, attrs } = args
  const x = inputs.x as tf.TensorInfo
  const xv = f32(backend, x)
  const paddings = attrs.paddings as Array<[number, number]>
  if (!xv || paddings.length !== x.shape.length) return fallback(args)
  const before = paddings.map((p) => p[0])
  const shape = x.shape.map((d, i) => d + paddings[i][0] + paddings[i][1])
  const out = backend.output(shape.reduce((a, b) => a * b, 1))
  backend.addon.pad(xv, x.shape, before, shape, Number(attrs.constantValue), out)
  return backend.out(shape, out)
}

export const padKernels: readonly NativeKernelEntry[] = [{ kernelName: "PadV2", kernel: padV2 }]
