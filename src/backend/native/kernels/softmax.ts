import type * as tf from "@tensorflow/tfjs"
import { f32, type NativeKernel, type NativeKernelEntry } from "../kernel.js"

/** Softmax over the last axis (the only axis the stock kernel supports). */
const softmax: NativeKernel = (args, fallback) => {
  const { inputs, backend, attrs } = args
  const x = inputs.logits as tf.TensorInfo
  const xv = f32(backend, x)
  const rank = x.shape.length
  const dim = Number(attrs.dim)
  if (!xv || rank === 0 || (dim !== -1 && dim !== rank - 1)) return fallback(args)
  const cols = x.shape[rank - 1]
  const out = backend.output(xv.length)
  backend.addon.softmax(xv, out, cols === 0 ? 0 : xv.length / cols, cols)
  return backend.out(x.shape, out)
}

export const softmaxKernels: readonly NativeKernelEntry[] = [{ kernelName: "Softmax", kernel: softmax }]
