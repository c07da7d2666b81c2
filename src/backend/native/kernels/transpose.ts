import type * as tf from "@tensorflow/tfjs"
import { sizeOf, type NativeKernel, type NativeKernelEntry } from "../kernel.js"

/** Any permutation of float32, int32 or bool tensors. */
const transpose: NativeKernel = (args, fallback) => {
  const { inputs, backend, attrs } = args
  const x = inputs.x as tf.TensorInfo
  const perm = attrs.perm as number[]
  const xv = backend.values(x)
  const shape = perm.map((p) => x.shape[p])
  const n = sizeOf(x.shape)
  if (x.dtype === "float32" && xv instanceof Float32Array) {
    const out = backend.output(n)
    backend.addon.transpose(xv, x.shape, perm, out)
    return backend.out(shape, out)
  }
  if (xv instanceof Int32Array || xv instanceof Uint8Array) {
    const out = xv instanceof Int32Array ? new Int32Array(n) : new Uint8Array(n)
    backend.addon.transpose(xv, x.shape, perm, out)
    return backend.makeTensorInfo(shape, x.dtype, out)
  }
  return fallback(args)
}

export const transposeKernels: readonly NativeKernelEntry[] = [{ kernelName: "Transpose", kernel: transpose }]
