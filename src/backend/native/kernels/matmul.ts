import * as tf from "@tensorflow/tfjs"
import { shapeKey } from "../auto-precision.js"
import { PRECISION_CODE } from "../backend.js"
import { f32, sizeOf, type NativeKernel, type NativeKernelArgs, type NativeKernelEntry } from "../kernel.js"

/** Activation codes of native/kernels.h (Act). */
const ACTIVATIONS: Readonly<Record<string, number>> = {
  linear: 0,
  relu: 1,
  relu6: 2,
  sigmoid: 3,
  elu: 4,
  leakyrelu: 5,
}

interface Product {
  readonly out: Float32Array
  readonly shape: number[]
}

/** a·b with tfjs BatchMatMul semantics; undefined when the native path does not apply. */
const product = (
  args: NativeKernelArgs,
  bias: Float32Array | null,
  activation: number,
  alpha: number,
): Product | undefined => {
  const { inputs, backend, attrs } = args
  const a = inputs.a as tf.TensorInfo
  const b = inputs.b as tf.TensorInfo
  const ta = Boolean(attrs.transposeA)
  const tb = Boolean(attrs.transposeB)
  const av = f32(backend, a)
  const bv = f32(backend, b)
  if (!av || !bv) return undefined
  const ar = a.shape.length
  const br = b.shape.length
  const k = ta ? a.shape[ar - 2] : a.shape[ar - 1]
  const kb = tb ? b.shape[br - 1] : b.shape[br - 2]
  const m = ta ? a.shape[ar - 1] : a.shape[ar - 2]
  const n = tb ? b.shape[br - 2] : b.shape[br - 1]
  if (k !== kb) return undefined
  const outerA = a.shape.slice(0, -2)
  const outerB = b.shape.slice(0, -2)
  const outer = tf.backend_util.assertAndGetBroadcastShape(outerA, outerB)
  const batchA = sizeOf(outerA)
  const batchB = sizeOf(outerB)
  if (batchA !== batchB && batchA !== 1 && batchB !== 1) return undefined
  const out = backend.output(Math.max(batchA, batchB) * m * n)
  const dims = [batchA, batchB, m, n, k] as const
  // oneDNN runs a batch of products against one matrix as one product of batchA·m rows (native/matmul.cc).
  const single = batchB === 1 && (batchA === 1 || !ta)
  const measured = single && backend.bf16Shapes.has(shapeKey({ m: batchA * m, k, n, transposeA: ta, transposeB: tb }))
  const precision = PRECISION_CODE[measured ? "bf16" : backend.precision]
  let err = backend.addon.matmul(av, bv, out, dims, ta, tb, bias, activation, alpha, precision)
  // A shape oneDNN's bf16 kernels reject still runs in fp32 rather than in stock JS.
  if (err !== "" && precision !== 0) err = backend.addon.matmul(av, bv, out, dims, ta, tb, bias, activation, alpha, 0)
  if (err !== "") {
    backend.pool.giveBack(out)
    return undefined
  }
  return { out, shape: [...outer, m, n] }
}

const batchMatMul: NativeKernel = (args, fallback) => {
  const p = product(args, null, 0, 0)
  return p ? args.backend.out(p.shape, p.out) : fallback(args)
}

/** Bias of length n along the last axis and the activations oneDNN fuses as post-ops. */
const fusedMatMul: NativeKernel = (args, fallback) => {
  const { inputs, backend, attrs } = args
  const activation = ACTIVATIONS[String(attrs.activation ?? "linear")]
  if (activation === undefined) return fallback(args)
  const b = inputs.b as tf.TensorInfo
  const n = attrs.transposeB ? b.shape[b.shape.length - 2] : b.shape[b.shape.length - 1]
  let bias: Float32Array | null = null
  if (inputs.bias !== undefined) {
    const t = inputs.bias as tf.TensorInfo
    const v = f32(backend, t)
    if (!v || sizeOf(t.shape) !== n || (t.shape.length > 0 && t.shape[t.shape.length - 1] !== n)) return fallback(args)
    bias = v
  }
  const p = product(args, bias, activation, Number(attrs.leakyreluAlpha ?? 0.2))
  return p ? backend.out(p.shape, p.out) : fallback(args)
}

export const matmulKernels: readonly NativeKernelEntry[] = [
  { kernelName: "BatchMatMul", kernel: batchMatMul },
  { kernelName: "_FusedMatMul", kernel: fusedMatMul },
]
