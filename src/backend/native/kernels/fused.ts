import * as tf from "@tensorflow/tfjs"
import {
  ADAMW_UPDATE,
  CAUSAL_SOFTMAX,
  CAUSAL_SOFTMAX_GRAD,
  FUSED_ACTIVATION,
  FUSED_ATTENTION,
  FUSED_ATTENTION_GRAD,
  FUSED_ACTIVATION_GRAD,
  MUON_UPDATE,
  NEWTON_SCHULZ,
  NORMALIZE,
  NORMALIZE_GRAD,
  RELU_BIAS_GRAD,
  ROW_COSINE,
  SOFT_TARGET_DIVERGENCE,
  SOFT_TARGET_GRAD,
  SOFTMAX_CROSS_ENTROPY,
  SOFTMAX_CROSS_ENTROPY_GRAD,
  SOFTMAX_MARGIN,
} from "../../fused.js"
import type { AttentionDims, AttentionRotation } from "../addon.js"
import type { NativeBackend } from "../backend.js"
import { f32, i32, sizeOf } from "../kernel.js"

interface Args {
  readonly inputs: tf.NamedTensorInfoMap
  readonly backend: NativeBackend
  readonly attrs: tf.NamedAttrMap
}

const float32 = (backend: NativeBackend, t: tf.TensorInfo, what: string): Float32Array => {
  const v = f32(backend, t)
  if (!v) throw new Error(`fused kernel: ${what} must be float32, got ${t.dtype}`)
  return v
}

const int32 = (backend: NativeBackend, t: tf.TensorInfo, what: string): Int32Array => {
  const v = i32(backend, t)
  if (!v) throw new Error(`fused kernel: ${what} must be int32, got ${t.dtype}`)
  return v
}

const activation = ({ inputs, backend, attrs }: Args): tf.TensorInfo => {
  const x = inputs.x as tf.TensorInfo
  const xv = float32(backend, x, "x")
  const out = backend.output(xv.length)
  backend.addon.act(Number(attrs.op), xv, out, Number(attrs.alpha))
  return backend.out(x.shape, out)
}

const activationGrad = ({ inputs, backend, attrs }: Args): tf.TensorInfo => {
  const x = inputs.x as tf.TensorInfo
  const xv = float32(backend, x, "x")
  const dv = float32(backend, inputs.dy as tf.TensorInfo, "dy")
  const out = backend.output(xv.length)
  backend.addon.actGrad(Number(attrs.op), xv, dv, out, Number(attrs.alpha))
  return backend.out(x.shape, out)
}

const crossEntropy = ({ inputs, backend }: Args): tf.TensorInfo[] => {
  const logits = inputs.logits as tf.TensorInfo
  const [n, v] = logits.shape as [number, number]
  const nll = backend.output(n)
  const lse = backend.output(n)
  backend.addon.xent(float32(backend, logits, "logits"), int32(backend, inputs.targets as tf.TensorInfo, "targets"), n, v, nll, lse)
  return [backend.out([n], nll), backend.out([n], lse)]
}

const softmaxMargin = ({ inputs, backend }: Args): tf.TensorInfo => {
  const logits = inputs.logits as tf.TensorInfo
  const [n, v] = logits.shape as [number, number]
  const out = backend.output(n)
  backend.addon.softmaxMargin(float32(backend, logits, "logits"), out, n, v)
  return backend.out([n], out)
}

const rowCosine = ({ inputs, backend }: Args): tf.TensorInfo => {
  const a = inputs.a as tf.TensorInfo
  const [n, d] = a.shape as [number, number]
  if (inputs.b!.shape.join() !== a.shape.join()) throw new Error(`fused kernel: row cosine of [${a.shape}] and [${inputs.b!.shape}]`)
  const out = backend.output(n)
  backend.addon.rowCosines(float32(backend, a, "a"), float32(backend, inputs.b as tf.TensorInfo, "b"), out, n, d)
  return backend.out([n], out)
}

const crossEntropyGrad = ({ inputs, backend }: Args): tf.TensorInfo => {
  const logits = inputs.logits as tf.TensorInfo
  const [n, v] = logits.shape as [number, number]
  const x = float32(backend, logits, "logits")
  // The logits are saved for this gradient alone: when nothing else references them, the
  // gradient overwrites them rather than holding a second [N, V] buffer at the step's peak.
  const out = backend.sole(logits) && x.length === n * v ? x : backend.output(n * v)
  backend.addon.xentGrad(
    x,
    float32(backend, inputs.lse as tf.TensorInfo, "lse"),
    int32(backend, inputs.targets as tf.TensorInfo, "targets"),
    float32(backend, inputs.scale as tf.TensorInfo, "scale"),
    n,
    v,
    out,
  )
  return backend.out([n, v], out)
}

const logitPair = (inputs: tf.NamedTensorInfoMap, what: string): [n: number, v: number] => {
  const s = (inputs.student as tf.TensorInfo).shape
  const t = (inputs.teacher as tf.TensorInfo).shape
  if (s.length !== 2 || s.join(",") !== t.join(",")) throw new Error(`${what}: student logits [${s}] and teacher logits [${t}] must be equal [N, V]`)
  return [s[0]!, s[1]!]
}

const softTargets = ({ inputs, backend, attrs }: Args): tf.TensorInfo[] => {
  const [n, v] = logitPair(inputs, SOFT_TARGET_DIVERGENCE)
  const [lseS, lseT, div] = [backend.output(n), backend.output(n), backend.output(n)]
  const f = (name: string) => float32(backend, inputs[name] as tf.TensorInfo, name)
  backend.addon.softXent(f("student"), f("teacher"), n, v, 1 / Number(attrs.temperature), Boolean(attrs.reverse), lseS, lseT, div)
  return [backend.out([n], lseS), backend.out([n], lseT), backend.out([n], div)]
}

const softTargetGrad = ({ inputs, backend, attrs }: Args): tf.TensorInfo => {
  const [n, v] = logitPair(inputs, SOFT_TARGET_GRAD)
  const out = backend.output(n * v)
  const f = (name: string) => float32(backend, inputs[name] as tf.TensorInfo, name)
  backend.addon.softXentGrad(
    f("student"),
    f("teacher"),
    f("lse"),
    int32(backend, inputs.targets as tf.TensorInfo, "targets"),
    f("lseS"),
    f("lseT"),
    f("div"),
    f("ceScale"),
    f("kdScale"),
    n,
    v,
    1 / Number(attrs.temperature),
    Boolean(attrs.reverse),
    out,
  )
  return backend.out([n, v], out)
}

const normalize = ({ inputs, backend, attrs }: Args): tf.TensorInfo[] => {
  const x = inputs.x as tf.TensorInfo
  const d = x.shape[x.shape.length - 1]!
  const rows = sizeOf(x.shape.slice(0, -1))
  const [y, mean, rstd] = [backend.output(rows * d), backend.output(rows), backend.output(rows)]
  const bias = inputs.bias === undefined ? null : float32(backend, inputs.bias as tf.TensorInfo, "bias")
  backend.addon.norm(float32(backend, x, "x"), float32(backend, inputs.gain as tf.TensorInfo, "gain"), bias, rows, d, Number(attrs.eps), Boolean(attrs.center), y, mean, rstd)
  return [backend.out(x.shape, y), backend.out([rows], mean), backend.out([rows], rstd)]
}

const normalizeGrad = ({ inputs, backend, attrs }: Args): tf.TensorInfo[] => {
  const x = inputs.x as tf.TensorInfo
  const d = x.shape[x.shape.length - 1]!
  const rows = sizeOf(x.shape.slice(0, -1))
  const [dx, dgain] = [backend.output(rows * d), backend.output(d)]
  const dbias = attrs.bias ? backend.output(d) : null
  const f = (name: string) => float32(backend, inputs[name] as tf.TensorInfo, name)
  backend.addon.normGrad(f("x"), f("gain"), f("mean"), f("rstd"), f("dy"), rows, d, Boolean(attrs.center), dx, dgain, dbias)
  return [backend.out(x.shape, dx), backend.out([d], dgain), ...(dbias ? [backend.out([d], dbias)] : [])]
}

/** [rows, tq, tk] of causal scores [..., tq, tk]. */
const causalDims = (x: tf.TensorInfo, what: string): [rows: number, tq: number, tk: number] => {
  const [tq, tk] = x.shape.slice(-2) as [number, number]
  if (x.shape.length < 2 || tk < tq) throw new Error(`${what}: scores [${x.shape}] must be [..., tq, tk] with tk ≥ tq`)
  return [sizeOf(x.shape.slice(0, -1)), tq, tk]
}

const causalSoftmax = ({ inputs, backend }: Args): tf.TensorInfo => {
  const x = inputs.x as tf.TensorInfo
  const [rows, tq, tk] = causalDims(x, CAUSAL_SOFTMAX)
  const out = backend.output(rows * tk)
  backend.addon.causalSoftmax(float32(backend, x, "x"), out, rows, tq, tk)
  return backend.out(x.shape, out)
}

const causalSoftmaxGrad = ({ inputs, backend }: Args): tf.TensorInfo => {
  const y = inputs.y as tf.TensorInfo
  const [rows, tq, tk] = causalDims(y, CAUSAL_SOFTMAX_GRAD)
  const out = backend.output(rows * tk)
  backend.addon.causalSoftmaxGrad(float32(backend, y, "y"), float32(backend, inputs.dy as tf.TensorInfo, "dy"), out, rows, tq, tk)
  return backend.out(y.shape, out)
}

const reluBiasGrad = ({ inputs, backend }: Args): tf.TensorInfo[] => {
  const y = inputs.y as tf.TensorInfo
  const cols = y.shape[y.shape.length - 1]!
  const rows = sizeOf(y.shape.slice(0, -1))
  const [dz, db] = [backend.output(rows * cols), backend.output(cols)]
  backend.addon.reluBiasGrad(float32(backend, y, "y"), float32(backend, inputs.dy as tf.TensorInfo, "dy"), dz, db, rows, cols)
  return [backend.out(y.shape, dz), backend.out([cols], db)]
}

const adamw = ({ inputs, backend, attrs }: Args): tf.TensorInfo[] => {
  const p = inputs.p as tf.TensorInfo
  const f = (name: string) => float32(backend, inputs[name] as tf.TensorInfo, name)
  for (const name of ["g", "m", "v"]) {
    const shape = (inputs[name] as tf.TensorInfo).shape
    if (sizeOf(shape) !== sizeOf(p.shape)) throw new Error(`AdamWUpdate: ${name} has shape [${shape}], the parameter [${p.shape}]`)
  }
  const n = sizeOf(p.shape)
  const [pOut, mOut, vOut] = [backend.output(n), backend.output(n), backend.output(n)]
  backend.addon.adamw(f("p"), f("g"), f("m"), f("v"), Float32Array.from(attrs.scalars as number[]), Boolean(attrs.decay), pOut, mOut, vOut)
  return [backend.out(p.shape, pOut), backend.out(p.shape, mOut), backend.out(p.shape, vOut)]
}

/** [rows, cols] of a matrix, for the Muon kernels. */
const matrixDims = (t: tf.TensorInfo, what: string): [rows: number, cols: number] => {
  if (t.shape.length !== 2) throw new Error(`${what}: expected a matrix, got shape [${t.shape}]`)
  return t.shape as [number, number]
}

const newtonSchulz = ({ inputs, backend, attrs }: Args): tf.TensorInfo => {
  const g = inputs.g as tf.TensorInfo
  const [rows, cols] = matrixDims(g, NEWTON_SCHULZ)
  const out = backend.output(rows * cols)
  backend.addon.newtonSchulz(float32(backend, g, "g"), rows, cols, Number(attrs.steps), Float32Array.from(attrs.coefficients as number[]), out)
  return backend.out(g.shape, out)
}

const muon = ({ inputs, backend, attrs }: Args): tf.TensorInfo[] => {
  const count = Object.keys(inputs).length / 3
  const matrices = Array.from({ length: count }, (_, i) => {
    const p = inputs[`p${i}`] as tf.TensorInfo
    const [rows, cols] = matrixDims(p, MUON_UPDATE)
    for (const name of [`g${i}`, `m${i}`]) {
      const shape = (inputs[name] as tf.TensorInfo).shape
      if (shape.join(",") !== p.shape.join(",")) throw new Error(`${MUON_UPDATE}: ${name} has shape [${shape}], the parameter [${p.shape}]`)
    }
    return { p, rows, cols, pOut: backend.output(rows * cols), mOut: backend.output(rows * cols) }
  })
  const f = (name: string) => float32(backend, inputs[name] as tf.TensorInfo, name)
  backend.addon.muon(
    matrices.map((_, i) => f(`p${i}`)),
    matrices.map((_, i) => f(`g${i}`)),
    matrices.map((_, i) => f(`m${i}`)),
    matrices.flatMap((q) => [q.rows, q.cols]),
    Float32Array.from(attrs.scalars as number[]),
    attrs.decays as boolean[],
    Number(attrs.steps),
    Boolean(attrs.nesterov),
    Float32Array.from(attrs.coefficients as number[]),
    matrices.map((q) => q.pOut),
    matrices.map((q) => q.mOut),
  )
  return [...matrices.map((q) => backend.out(q.p.shape, q.pOut)), ...matrices.map((q) => backend.out(q.p.shape, q.mOut))]
}

/** [B·H, heads, T, Tk, dh] of q [B, H, T, dh] and k, v [B, H, Tk, dh], after checking their shapes and the attributes. */
const attentionDims = (inputs: tf.NamedTensorInfoMap, attrs: tf.NamedAttrMap, what: string): AttentionDims => {
  const shape = (inputs.q as tf.TensorInfo).shape
  const keys = (inputs.k as tf.TensorInfo).shape
  const values = (inputs.v as tf.TensorInfo).shape
  const same = shape.length === 4 && keys.length === 4 && keys.join(",") === values.join(",")
  if (!same || keys[0] !== shape[0] || keys[1] !== shape[1] || keys[3] !== shape[3])
    throw new Error(`${what}: q [${shape}], k [${keys}] and v [${values}] must be [B, H, T, dh], [B, H, Tk, dh] and [B, H, Tk, dh]`)
  const [b, h, t, dh] = shape as [number, number, number, number]
  const slopes = attrs.slopes as number[]
  if (slopes.length !== 0 && slopes.length !== h) throw new Error(`${what}: ${slopes.length} slopes for ${h} heads`)
  const ranges = attrs.ranges as Int32Array
  if (ranges.length !== 2 * t) throw new Error(`${what}: ${ranges.length} range ends for ${t} queries, expected ${2 * t}`)
  return [b * h, h, t, keys[2]!, dh]
}

const slopesOf = (attrs: tf.NamedAttrMap): Float32Array | null => {
  const slopes = attrs.slopes as number[]
  return slopes.length === 0 ? null : Float32Array.from(slopes)
}

const rotationOf = (attrs: tf.NamedAttrMap, [, , t, , dh]: AttentionDims, what: string): AttentionRotation | null => {
  const rotation = attrs.rotation as { half: number; tables: Float32Array } | null
  if (rotation === null) return null
  if (rotation.tables.length !== 4 * t * dh) throw new Error(`${what}: rotation tables hold ${rotation.tables.length} values, expected 4·${t}·${dh}`)
  return [rotation.half, rotation.tables]
}

const attention = ({ inputs, backend, attrs }: Args): tf.TensorInfo[] => {
  const dims = attentionDims(inputs, attrs, FUSED_ATTENTION)
  const [bh, , t, , dh] = dims
  const f = (name: string) => float32(backend, inputs[name] as tf.TensorInfo, name)
  const [out, lse] = [backend.output(bh * t * dh), backend.output(bh * t)]
  backend.addon.attention(f("q"), f("k"), f("v"), dims, attrs.ranges as Int32Array, slopesOf(attrs), rotationOf(attrs, dims, FUSED_ATTENTION), out, lse)
  const shape = (inputs.q as tf.TensorInfo).shape
  return [backend.out(shape, out), backend.out(shape.slice(0, 3), lse)]
}

const attentionGrad = ({ inputs, backend, attrs }: Args): tf.TensorInfo[] => {
  const dims = attentionDims(inputs, attrs, FUSED_ATTENTION_GRAD)
  const [bh, , t, tk, dh] = dims
  const f = (name: string) => float32(backend, inputs[name] as tf.TensorInfo, name)
  const [dq, dk, dv] = [backend.output(bh * t * dh), backend.output(bh * tk * dh), backend.output(bh * tk * dh)]
  const dlse = inputs.dlse === undefined ? null : f("dlse")
  const rotation = rotationOf(attrs, dims, FUSED_ATTENTION_GRAD)
  backend.addon.attentionGrad(f("q"), f("k"), f("v"), f("out"), f("lse"), f("dy"), dlse, dims, attrs.ranges as Int32Array, slopesOf(attrs), rotation, dq, dk, dv)
  return [backend.out((inputs.q as tf.TensorInfo).shape, dq), backend.out((inputs.k as tf.TensorInfo).shape, dk), backend.out((inputs.v as tf.TensorInfo).shape, dv)]
}

/** Kernels the stock cpu backend does not have (so they are registered, not overridden). */
export const fusedKernels = [
  { kernelName: FUSED_ACTIVATION, kernelFunc: activation },
  { kernelName: FUSED_ACTIVATION_GRAD, kernelFunc: activationGrad },
  { kernelName: SOFTMAX_CROSS_ENTROPY, kernelFunc: crossEntropy },
  { kernelName: SOFTMAX_CROSS_ENTROPY_GRAD, kernelFunc: crossEntropyGrad },
  { kernelName: SOFTMAX_MARGIN, kernelFunc: softmaxMargin },
  { kernelName: ROW_COSINE, kernelFunc: rowCosine },
  { kernelName: SOFT_TARGET_DIVERGENCE, kernelFunc: softTargets },
  { kernelName: SOFT_TARGET_GRAD, kernelFunc: softTargetGrad },
  { kernelName: NORMALIZE, kernelFunc: normalize },
  { kernelName: NORMALIZE_GRAD, kernelFunc: normalizeGrad },
  { kernelName: ADAMW_UPDATE, kernelFunc: adamw },
  { kernelName: NEWTON_SCHULZ, kernelFunc: newtonSchulz },
  { kernelName: MUON_UPDATE, kernelFunc: muon },
  { kernelName: CAUSAL_SOFTMAX, kernelFunc: causalSoftmax },
  { kernelName: CAUSAL_SOFTMAX_GRAD, kernelFunc: causalSoftmaxGrad },
  { kernelName: RELU_BIAS_GRAD, kernelFunc: reluBiasGrad },
  { kernelName: FUSED_ATTENTION, kernelFunc: attention },
  { kernelName: FUSED_ATTENTION_GRAD, kernelFunc: attentionGrad },
] as const

/**
 * Gradients of the fused kernels that autodiff sees as ops (the others run inside a custom
 * gradient): registered with the kernels, since tfjs keeps one gradient per kernel name for
 * every backend.
 */
export const fusedGradients: readonly tf.GradConfig[] = [
  {
    // dy is [dOut, dLse]: tfjs fills an output's gradient with zeros where nothing used it.
    kernelName: FUSED_ATTENTION,
    inputsToSave: ["q", "k", "v"],
    outputsToSave: [true, true],
    gradFunc: (dy, saved, attrs) => {
      const [q, k, v, out, lse] = saved as tf.Tensor[]
      const [dout, dlse] = dy as tf.Tensor[]
      // One kernel gives all three, so it runs here: tfjs calls each input's function in a tidy of its own.
      const [dq, dk, dv] = tf.engine().runKernel(FUSED_ATTENTION_GRAD, { q: q!, k: k!, v: v!, out: out!, lse: lse!, dy: dout!, dlse: dlse! }, attrs) as unknown as tf.Tensor[]
      return { q: () => dq!, k: () => dk!, v: () => dv! }
    },
  },
  {
    kernelName: FUSED_ACTIVATION,
    inputsToSave: ["x"],
    gradFunc: (dy, saved, attrs) => ({
      x: () => tf.engine().runKernel(FUSED_ACTIVATION_GRAD, { x: saved[0]!, dy: dy as tf.Tensor }, attrs) as tf.Tensor,
    }),
  },
]
