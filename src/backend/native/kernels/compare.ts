import * as tf from "@tensorflow/tfjs"
import { sizeOf, type NativeKernel, type NativeKernelEntry } from "../kernel.js"

/** Op codes of native/kernels.h (CmpOp). */
const OPS: ReadonlyArray<readonly [kernelName: string, code: number]> = [
  ["Equal", 0],
  ["NotEqual", 1],
  ["Less", 2],
  ["LessEqual", 3],
  ["Greater", 4],
  ["GreaterEqual", 5],
  ["LogicalAnd", 6],
  ["LogicalOr", 7],
]

type Values = Float32Array | Int32Array | Uint8Array

const typed = (v: unknown): v is Values => v instanceof Float32Array || v instanceof Int32Array || v instanceof Uint8Array

/** Comparisons (and logical and/or) with broadcasting; both inputs share a dtype, output is bool. */
const compare =
  (code: number): NativeKernel =>
  (args, fallback) => {
    const { inputs, backend } = args
    const a = inputs.a as tf.TensorInfo
    const b = inputs.b as tf.TensorInfo
    const av = backend.values(a)
    const bv = backend.values(b)
    if (a.dtype !== b.dtype || !typed(av) || !typed(bv) || av.constructor !== bv.constructor) return fallback(args)
    const shape = tf.backend_util.assertAndGetBroadcastShape(a.shape, b.shape)
    const out = new Uint8Array(sizeOf(shape))
    backend.addon.compare(code, av, a.shape, bv, b.shape, out, shape)
    return backend.makeTensorInfo(shape, "bool", out)
  }

/** where(condition, t, e) for same-shape float32 operands. */
const select: NativeKernel = (args, fallback) => {
  const { inputs, backend } = args
  const c = inputs.condition as tf.TensorInfo
  const t = inputs.t as tf.TensorInfo
  const e = inputs.e as tf.TensorInfo
  const cv = backend.values(c)
  const tv = backend.values(t)
  const ev = backend.values(e)
  const same = tf.util.arraysEqual(c.shape, t.shape) && tf.util.arraysEqual(t.shape, e.shape)
  if (!same || !(cv instanceof Uint8Array) || !(tv instanceof Float32Array) || !(ev instanceof Float32Array) || t.dtype !== "float32")
    return fallback(args)
  const out = backend.output(tv.length)
  backend.addon.select(cv, tv, ev, out)
  return backend.out(t.shape, out)
}

export const compareKernels: readonly NativeKernelEntry[] = [
  ...OPS.map(([kernelName, code]) => ({ kernelName, kernel: compare(code) })),
  { kernelName: "Select", kernel: select },
]
