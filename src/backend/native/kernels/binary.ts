import * as tf from "@tensorflow/tfjs"
import { f32, i32, sizeOf, type NativeKernel, type NativeKernelEntry } from "../kernel.js"

/**
 * Op codes of native/kernels.h (BinOp), by tfjs kernel name and its two input names; `int`
 * marks ops with an int32 version (index arithmetic, e.g. the causal mask's band).
 */
const OPS: ReadonlyArray<readonly [kernelName: string, code: number, a: string, b: string, int: boolean]> = [
  ["Add", 0, "a", "b", true],
  ["Sub", 1, "a", "b", true],
  ["Multiply", 2, "a", "b", true],
  ["RealDiv", 3, "a", "b", false],
  ["Maximum", 4, "a", "b", true],
  ["Minimum", 5, "a", "b", true],
  ["SquaredDifference", 6, "a", "b", false],
  ["Pow", 7, "a", "b", false],
  ["Prelu", 8, "x", "alpha", false],
]

/** Binary ops with numpy broadcasting on either side; other dtypes fall back. */
const binary =
  (code: number, aName: string, bName: string, int: boolean): NativeKernel =>
  (args, fallback) => {
    const { inputs, backend } = args
    const a = inputs[aName] as tf.TensorInfo
    const b = inputs[bName] as tf.TensorInfo
    const av = f32(backend, a)
    const bv = f32(backend, b)
    if (av && bv) {
      const shape = tf.backend_util.assertAndGetBroadcastShape(a.shape, b.shape)
      const out = backend.output(sizeOf(shape))
      backend.addon.binary(code, av, a.shape, bv, b.shape, out, shape)
      return backend.out(shape, out)
    }
    const ai = int ? i32(backend, a) : undefined
    const bi = int ? i32(backend, b) : undefined
    if (ai && bi) {
      const shape = tf.backend_util.assertAndGetBroadcastShape(a.shape, b.shape)
      const out = new Int32Array(sizeOf(shape))
      backend.addon.binary(code, ai, a.shape, bi, b.shape, out, shape)
      return backend.makeTensorInfo(shape, "int32", out)
    }
    return fallback(args)
  }

export const binaryKernels: readonly NativeKernelEntry[] = OPS.map(([kernelName, code, a, b, int]) => ({
  kernelName,
  kernel: binary(code, a, b, int),
}))
