import type * as tf from "@tensorflow/tfjs"
import { f32, type NativeKernel, type NativeKernelEntry } from "../kernel.js"

/** Op codes of native/kernels.h (UnOp); `alpha` names the attribute some ops take. */
const OPS: ReadonlyArray<readonly [kernelName: string, code: number, alpha?: string]> = [
  ["Exp", 0],
  ["Log", 1],
  ["Sigmoid", 2],
  ["Tanh", 3],
  ["Erf", 4],
  ["Relu", 5],
  ["Relu6", 6],
  ["Sqrt", 7],
  ["Rsqrt", 8],
  ["Square", 9],
  ["Neg", 10],
  ["Abs", 11],
  ["Reciprocal", 12],
  ["Step", 13, "alpha"],
  ["Elu", 14],
  ["LeakyRelu", 15, "alpha"],
  ["Log1p", 16],
  ["Expm1", 17],
]

const unary =
  (code: number, alphaAttr: string | undefined): NativeKernel =>
  (args, fallback) => {
    const { inputs, backend, attrs } = args
    const x = inputs.x as tf.TensorInfo
    const xv = f32(backend, x)
    if (!xv) return fallback(args)
    const out = backend.output(xv.length)
    backend.addon.unary(code, xv, out, alphaAttr === undefined ? 0 : Number(attrs[alphaAttr]))
    return backend.out(x.shape, out)
  }

export const unaryKernels: readonly NativeKernelEntry[] = OPS.map(([kernelName, code, alpha]) => ({
  kernelName,
  kernel: unary(code, alpha),
}))
