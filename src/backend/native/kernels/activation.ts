import type * as tf from "@tensorflow/tfjs"
import { FUSED_ACTIVATION, FUSED_ACTIVATION_GRAD } from "../../fused-activation.js"
import type { NativeBackend } from "../backend.js"
import { f32 } from "../kernel.js"

interface Args {
  readonly inputs: tf.NamedTensorInfoMap
  readonly backend: NativeBackend
  readonly attrs: tf.NamedAttrMap
}

const float32 = (backend: NativeBackend, t: tf.TensorInfo, what: string): Float32Array => {
  const v = f32(backend, t)
  if (!v) throw new Error(`${FUSED_ACTIVATION}: ${what} must be float32, got ${t.dtype}`)
  return v
}

const forward = ({ inputs, backend, attrs }: Args): tf.TensorInfo => {
  const x = inputs.x as tf.TensorInfo
  const xv = float32(backend, x, "x")
  const out = backend.output(xv.length)
  backend.addon.act(Number(attrs.op), xv, out, Number(attrs.alpha))
  return backend.out(x.shape, out)
}

const backward = ({ inputs, backend, attrs }: Args): tf.TensorInfo => {
  const x = inputs.x as tf.TensorInfo
  const xv = float32(backend, x, "x")
  const dv = float32(backend, inputs.dy as tf.TensorInfo, "dy")
  const out = backend.output(xv.length)
  backend.addon.actGrad(Number(attrs.op), xv, dv, out, Number(attrs.alpha))
  return backend.out(x.shape, out)
}

/** Kernels the stock cpu backend does not have (so they are registered, not overridden). */
export const fusedKernels = [
  { kernelName: FUSED_ACTIVATION, kernelFunc: forward },
  { kernelName: FUSED_ACTIVATION_GRAD, kernelFunc: backward },
] as const
