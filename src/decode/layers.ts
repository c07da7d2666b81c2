import { match } from "ts-pattern"
import type { Visible } from "../../dsl/kind.js"
import type { FfnSpec } from "../../dsl/ffn.js"
import type { ActivationOf, ActivationSpec, ActivationTag } from "../../dsl/kinds/activation/index.js"
import { activationModule } from "../../dsl/kinds/activation/index.js"
import { headDimOf, innerWidth, QK_NORM_EPS } from "../../dsl/kinds/attention/fields.js"
import type { AttentionKindTag, AttentionOf, AttentionSpec } from "../../dsl/kinds/attention/index.js"
import { type AnyLinformer, sharedName } from "../../dsl/kinds/attention/linformer.js"
import { pick, type Sliding } from "../../dsl/kinds/attention/sliding.js"
import { sparseVisible } from "../../dsl/kinds/attention/sparse.js"
import type { NormOf, NormSpec, NormTag } from "../../dsl/kinds/norm/index.js"
import type { PosencSpec } from "../../dsl/kinds/posenc/index.js"
import type { Layer } from "../../dsl/nodes.js"
import { childNames, paramName } from "../../dsl/params.js"
import { moduleFor } from "../../dsl/registry.js"
import { scoreBiasRefusal } from "../attention/linformer.js"
import { FUSED_OPS } from "../backend/fused.js"
import { nativePosition } from "./position.js"
import { OP, type ProgramBuilder } from "./program.js"
import { parameter } from "./step.js"

/**
 * The layers of a decoding program, each as a few native ops with the float32 arithmetic of
 * its tfjs computation (the same fused kernels, the same order of elementwise operations;
 * only the order of the sums in products differs). The records are typed over the
 * registries' tags, so a new kind does not compile until it is emitted here.
 */

interface Act {
  readonly act: number
  readonly alpha: number
}

/** The act op's code and alpha for each activation (of the gate, for gated ones); relu and relu2 as native/kernels.h numbers them. */
const activations: { readonly [K in ActivationTag]: (spec: ActivationOf<K>) => Act } = {
  relu: () => ({ act: 3, alpha: 0 }),
  relu2: () => ({ act: 4, alpha: 0 }),
  gelu: () => ({ act: FUSED_OPS.gelu, alpha: 0 }),
  "gelu-tanh": () => ({ act: FUSED_OPS["gelu-tanh"], alpha: 0 }),
  swish: (spec) => ({ act: FUSED_OPS.swish, alpha: spec.beta }),
  silu: () => ({ act: FUSED_OPS.swish, alpha: 1 }),
  swiglu: () => ({ act: FUSED_OPS.swish, alpha: 1 }),
  geglu: () => ({ act: FUSED_OPS.gelu, alpha: 0 }),
  reglu: () => ({ act: 3, alpha: 0 }),
}

const activationOf = (spec: ActivationSpec): Act => moduleFor<(s: ActivationSpec) => Act>(activations, "activation", spec)(spec)

/** A layer emitted as ops from register x; returns its output register. */
type Emit<L> = (b: ProgramBuilder, l: L, prefix: string, x: number, context: Context) => number

interface Context {
  readonly width: number
  /** Index of the block. */
  readonly index: number
  readonly posenc: PosencSpec
}

/** A norm op's fields (native/kernels.h ProgramOp): its parameters, and whether it centres. */
export interface NormFields {
  readonly gain: number
  /** -1: none. */
  readonly bias: number
  readonly eps: number
  readonly center: boolean
}

const normKinds: { readonly [K in NormTag]: (b: ProgramBuilder, l: NormOf<K>, prefix: string) => NormFields } = {
  layer: (b, l, prefix) => ({ gain: b.param(paramName(prefix, "gain")).index, bias: l.bias ? b.param(paramName(prefix, "bias")).index : -1, eps: l.eps, center: true }),
  rms: (b, l, prefix) => ({ gain: b.param(paramName(prefix, "gain")).index, bias: -1, eps: l.eps, center: false }),
}

/** The fields of a norm op for the norm with parameters under `prefix` (also the exit op's final norm). */
export const normFields = (b: ProgramBuilder, l: NormSpec, prefix: string): NormFields =>
  moduleFor<(b: ProgramBuilder, l: NormSpec, prefix: string) => NormFields>(normKinds, "norm", l)(b, l, prefix)

const norm: Emit<NormSpec> = (b, l, prefix, x, { width }) => {
  const y = b.register(width)
  b.op({ code: OP.norm, x, y, ...normFields(b, l, prefix) })
  return y
}

/** y = x · w (+ bias) for named weights [in, out] into new registers. */
const linear = (b: ProgramBuilder, x: number, prefix: string, weights: readonly string[], biases: readonly string[], bias: boolean): number[] => {
  const targets = weights.map((w, i) => {
    const p = b.param(paramName(prefix, w), true)
    return { w: p.index, bias: bias ? b.param(paramName(prefix, biases[i]!)).index : -1, y: b.register(p.rows) }
  })
  b.op({ code: OP.linear, x, targets })
  return targets.map((t) => t.y)
}

const ffn: Emit<FfnSpec> = (b, l, prefix, x) => {
  const act = activationOf(l.activation)
  if (activationModule(l.activation).gated) {
    const [value, gate] = linear(b, x, prefix, ["w_in", "w_gate"], ["b_in", "b_gate"], l.bias) as [number, number]
    const g = b.register(b.widths[gate]!)
    b.op({ code: OP.act, x: gate, y: g, ...act })
    const hidden = b.register(b.widths[gate]!)
    b.op({ code: OP.mul, x: g, b: value, y: hidden })
    return linear(b, hidden, prefix, ["w_out"], ["b_out"], l.bias)[0]!
  }
  const [value] = linear(b, x, prefix, ["w_in"], ["b_in"], l.bias) as [number]
  const hidden = b.register(b.widths[value]!)
  b.op({ code: OP.act, x: value, y: hidden, ...act })
  return linear(b, hidden, prefix, ["w_out"], ["b_out"], l.bias)[0]!
}

/** QK-norm: each dh-wide head of register r RMS-normalised (a norm op over heads, its gain 1) into a new register. */
const normHeads = (b: ProgramBuilder, r: number, dh: number): number => {
  const y = b.register(b.widths[r]!)
  b.op({ code: OP.norm, x: r, y, gain: b.constant(new Float32Array(dh).fill(1)), bias: -1, eps: QK_NORM_EPS, center: false, dh })
  return y
}

/** The query and key registers an attention op reads: the projections, normalised under QK-norm. */
const queryKey = (b: ProgramBuilder, l: AttentionSpec, q: number, k: number, dh: number): [number, number] =>
  l.qkNorm ? [normHeads(b, q, dh), normHeads(b, k, dh)] : [q, k]

/**
 * Dense or masked attention, `visible` the kind's pattern for a mask (undefined: dense causal):
 * projections, then one op that scales and rotates, writes the cache and attends, then the
 * output projection.
 */
const masked =
  <S extends AttentionSpec>(visible: (spec: S, layer: number) => Visible | undefined): Emit<S> =>
  (b, l, prefix, x, { width, index, posenc }) => {
    const position = nativePosition(posenc)
    const dh = headDimOf(l, width)
    const [q0, k0, v] = linear(b, x, prefix, ["wq", "wk", "wv"], ["bq", "bk", "bv"], l.bias) as [number, number, number]
    const [q, k] = queryKey(b, l, q0, k0, dh)
    const heads = b.register(innerWidth(l, width))
    const half = position.rotary?.half(posenc, dh) ?? 0
    const slopes = position.slopes === undefined ? -1 : b.constant(position.slopes(posenc, l.heads))
    const slot = b.slots.push({ prefix, heads: l.heads, dh, visible: visible(l, index) }) - 1
    b.op({ code: OP.attend, q, k, v, y: heads, heads: l.heads, dh, half, slot, slopes, scale: 1 / Math.sqrt(dh) })
    return linear(b, heads, prefix, ["wo"], ["bo"], l.bias)[0]!
  }

/**
 * Sliding-window and Longformer attention as one window op, which finds each query's keys from
 * the window, the dilations and the global positions (no mask per call). Longformer's K_g and
 * V_g of every row share the product with Q, K, V; its op computes Q_g of the global rows only.
 */
const windowAttention: Emit<Sliding> = (b, l, prefix, x, { width, index, posenc }) => {
  const position = nativePosition(posenc)
  const dh = headDimOf(l, width)
  const longformer = l.kind === "longformer"
  const [q0, k0, v, kg0, vg] = linear(b, x, prefix, ["wq", "wk", "wv", ...(longformer ? ["wkg", "wvg"] : [])], ["bq", "bk", "bv", "bkg", "bvg"], l.bias) as number[]
  const [q, k] = queryKey(b, l, q0!, k0!, dh)
  const kg = longformer && l.qkNorm ? normHeads(b, kg0!, dh) : kg0
  const heads = b.register(innerWidth(l, width))
  const slot = b.slots.push({ prefix, heads: l.heads, dh, visible: undefined, ...(longformer ? { dim: 2 * dh } : {}) }) - 1
  b.op({
    code: OP.window,
    q,
    k,
    v,
    y: heads,
    heads: l.heads,
    dh,
    half: position.rotary?.half(posenc, dh) ?? 0,
    slot,
    slopes: position.slopes === undefined ? -1 : b.constant(position.slopes(posenc, l.heads)),
    scale: 1 / Math.sqrt(dh),
    window: pick(l.window, index),
    dilation: b.constant(Float32Array.from({ length: l.heads }, (_, h) => pick(l.dilation, h))),
    // Under QK-norm the op normalises the global rows' Q_g it computes.
    ...(l.qkNorm ? { eps: QK_NORM_EPS } : {}),
    ...(longformer
      ? { globals: b.constant(Float32Array.from(l.global)), x, kg, vg, wqg: b.param(paramName(prefix, "wqg"), true).index, bqg: l.bias ? b.param(paramName(prefix, "bqg")).index : -1 }
      : {}),
  })
  return linear(b, heads, prefix, ["wo"], ["bo"], l.bias)[0]!
}

/** Linformer as one op over the slot's cache; the causal form keeps its compressed keys and values as a state beside it. */
const linformerAttention: Emit<AnyLinformer> = (b, l, prefix, x, { width, posenc }) => {
  const position = nativePosition(posenc)
  // Refused as tfjs refuses it (src/attention/linformer.ts), when the first call builds the program.
  if (position.slopes !== undefined || position.bias !== undefined) throw new Error(scoreBiasRefusal(l.kind))
  const dh = headDimOf(l, width)
  const [q0, k0, v] = linear(b, x, prefix, ["wq", "wk", "wv"], ["bq", "bk", "bv"], l.bias) as [number, number, number]
  const [q, k] = queryKey(b, l, q0, k0, dh)
  const heads = b.register(innerWidth(l, width))
  const [e, f] = l.sharing === "none" || l.sharing === "headwise" ? ["e", "f"] : l.sharing === "kv" ? ["e", "e"] : [sharedName(l.k), sharedName(l.k)]
  const causal = l.kind === "linformer-causal"
  const slot = b.slots.push({ prefix, heads: l.heads, dh, visible: undefined, ...(causal ? { state: l.heads * 2 * l.k * dh } : {}) }) - 1
  b.op({
    code: OP.linformer,
    q,
    k,
    v,
    y: heads,
    heads: l.heads,
    dh,
    half: position.rotary?.half(posenc, dh) ?? 0,
    slot,
    scale: 1 / Math.sqrt(dh),
    e: b.param(paramName(prefix, e)).index,
    f: b.param(paramName(prefix, f)).index,
    rank: l.k,
    // The projections' columns: the context they were made for.
    length: parameter(b.source, paramName(prefix, e)).shape.at(-1)!,
    block: causal ? l.block : 0,
  })
  return linear(b, heads, prefix, ["wo"], ["bo"], l.bias)[0]!
}

/** Each attention kind's ops: dense and masked kinds through the attend op, the windowed ones and Linformer through ops of their own. */
const attentionKinds: { readonly [K in AttentionKindTag]: Emit<AttentionOf<K>> } = {
  full: masked(() => undefined),
  "sparse-strided": masked(sparseVisible),
  "sparse-fixed": masked(sparseVisible),
  "sliding-window": windowAttention,
  longformer: windowAttention,
  linformer: linformerAttention,
  "linformer-causal": linformerAttention,
}

const attention: Emit<AttentionSpec> = (b, l, prefix, x, context) => moduleFor<Emit<AttentionSpec>>(attentionKinds, "attention", l)(b, l, prefix, x, context)

/** Emits a layer of block `index` (parameters under `prefix`) from register x; returns its output register. */
export const emitLayer = (b: ProgramBuilder, layer: Layer, prefix: string, x: number, context: Context): number =>
  match(layer)
    .with({ op: "norm" }, (l) => norm(b, l, prefix, x, context))
    .with({ op: "ffn" }, (l) => ffn(b, l, prefix, x, context))
    .with({ op: "attention" }, (l) => attention(b, l, prefix, x, context))
    .with({ op: "residual" }, (l) => {
      const names = childNames(l.body)
      const branch = l.body.reduce((h, child, i) => emitLayer(b, child, `${prefix}.${names[i]}`, h, context), x)
      const y = b.register(context.width)
      b.op({ code: OP.add, x, b: branch, y })
      return y
    })
    .exhaustive()
