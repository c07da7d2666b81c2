import * as tf from "@tensorflow/tfjs"
import { beforeAll, describe, expect, it } from "vitest"
import { attention } from "../../dsl/index.js"
import type { AttentionSpec } from "../../dsl/kinds/attention/index.js"
import { attentionApply } from "../../src/attention/index.js"
import type { Dims } from "../../dsl/kind.js"
import { rope } from "../../dsl/kinds/posenc/rope.js"
import { t5 } from "../../dsl/kinds/posenc/t5.js"
import type { PositionHooks } from "../../src/model/kind.js"
import { posencCompute } from "../../src/posenc/index.js"
import { ctxOf, maxDiff, randomParams, viewOf } from "./helpers.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

type Pattern = (layer: number, h: number, i: number, j: number) => boolean

// The patterns as the papers state them, written here independently of the kinds' code.
const strided = (l: number, combine: string): Pattern => (layer, h, i, j) => {
  const a1 = j <= i && i - j <= l
  const a2 = j <= i && (i - j) % l === 0
  return combine === "merged" ? a1 || a2 : (combine === "alternate" ? layer % 2 === 0 : h < 2) ? a1 : a2
}
const fixed = (l: number, c: number, combine: string): Pattern => (layer, h, i, j) => {
  const a1 = j <= i && Math.floor(j / l) === Math.floor(i / l)
  const a2 = j <= i && j % l >= l - c
  return combine === "merged" ? a1 || a2 : (combine === "alternate" ? layer % 2 === 0 : h < 2) ? a1 : a2
}
const sliding = (windows: number[], dilations: number[], globals: number[] = []): Pattern => (layer, h, i, j) => {
  const w = windows[layer % windows.length]!
  const d = dilations[h % dilations.length]!
  return j <= i && ((i - j <= w * d && (i - j) % d === 0) || globals.includes(j))
}

/**
 * Dense attention over the full T×T scores with an explicit mask; rows that see nothing give
 * zero; `globals` rows use the global projections over every earlier token (Longformer).
 */
const denseReference = (
  x: tf.Tensor3D,
  p: (name: string) => tf.Tensor,
  heads: number,
  visible: (h: number, i: number, j: number) => boolean,
  position: PositionHooks,
  globals: number[] = [],
): tf.Tensor3D => {
  const [b, t, d] = x.shape
  const dh = d / heads
  const x2 = x.reshape([b * t, d])
  const proj = (w: string, bias: string) => tf.add(tf.matMul(x2, p(w)), p(bias)).reshape([b, t, heads, dh]).transpose([0, 2, 1, 3]) as tf.Tensor4D
  const attend = (names: [string, string, string], see: (h: number, i: number, j: number) => boolean) => {
    let q = tf.mul(proj(`w${names[0]}`, `b${names[0]}`), 1 / Math.sqrt(dh)) as tf.Tensor4D
    let k = proj(`w${names[1]}`, `b${names[1]}`)
    if (position.queryKey) [q, k] = position.queryKey(q, k, 0, 0)
    const mask = new Float32Array(heads * t * t)
    const live = new Float32Array(heads * t)
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < t; i++)
        for (let j = 0; j < t; j++) {
          if (see(h, i, j)) live[h * t + i] = 1
          else mask[(h * t + i) * t + j] = -1e9
        }
    let scores = tf.add(tf.matMul(q, k, false, true), tf.tensor3d(mask, [heads, t, t]))
    if (position.scoreBias) scores = tf.add(scores, position.scoreBias(heads, t, t, 0, 0))
    const out = tf.matMul(tf.softmax(scores), proj(`w${names[2]}`, `b${names[2]}`))
    return tf.mul(out, tf.tensor4d(live, [1, heads, t, 1]))
  }
  let y = attend(["q", "k", "v"], visible)
  if (globals.length > 0) {
    const g = attend(["qg", "kg", "vg"], (_h, i, j) => j <= i)
    const isGlobal = tf.tensor4d(Array.from({ length: t }, (_, i) => (globals.includes(i) ? 1 : 0)), [1, 1, t, 1])
    y = tf.add(tf.mul(y, tf.sub(1, isGlobal)), tf.mul(g, isGlobal))
  }
  const merged = y.transpose([0, 2, 1, 3]).reshape([b * t, d])
  return tf.add(tf.matMul(merged, p("wo")), p("bo")).reshape([b, t, d]) as tf.Tensor3D
}

const dims: Dims = { vocab: 11, width: 16, context: 64, layers: 2 }

const t5Hooks = (): PositionHooks => {
  const spec = t5.make({ heads: 4, buckets: 8, maxDistance: 20 })
  const table = tf.randomNormal([8, 4], 0, 1, "float32", 7)
  return posencCompute.t5.hooks!(() => table, spec, dims)
}
const ropeHooks = (): PositionHooks => posencCompute.rope.hooks!(() => tf.scalar(0), rope.make(), dims)

interface Case {
  readonly name: string
  readonly spec: AttentionSpec
  readonly pattern: Pattern
  readonly globals?: number[]
  readonly position?: () => PositionHooks
}

const cases: Case[] = [
  ...(["merged", "alternate", "split"] as const).flatMap((combine) => [
    { name: `strided ${combine}`, spec: attention("sparse-strided", { heads: 4, stride: 4, combine }), pattern: strided(4, combine) },
    { name: `fixed ${combine}`, spec: attention("sparse-fixed", { heads: 4, stride: 5, summary: 2, combine }), pattern: fixed(5, 2, combine) },
  ]),
  { name: "strided merged + t5 bias", spec: attention("sparse-strided", { heads: 4, stride: 3 }), pattern: strided(3, "merged"), position: t5Hooks },
  { name: "fixed split + t5 bias", spec: attention("sparse-fixed", { heads: 4, stride: 6, summary: 3, combine: "split" }), pattern: fixed(6, 3, "split"), position: t5Hooks },
  { name: "sliding window", spec: attention("sliding-window", { heads: 4, window: 3 }), pattern: sliding([3], [1]) },
  {
    name: "sliding per-layer windows, per-head dilation, rope",
    spec: attention("sliding-window", { heads: 4, window: [2, 4], dilation: [1, 2, 1, 3] }),
    pattern: sliding([2, 4], [1, 2, 1, 3]),
    position: ropeHooks,
  },
  { name: "sliding window wider than the sequence", spec: attention("sliding-window", { heads: 4, window: 40 }), pattern: sliding([40], [1]) },
  {
    name: "longformer + t5 bias",
    spec: attention("longformer", { heads: 4, window: 3, dilation: [1, 2, 1, 1], global: [0, 7] }),
    pattern: sliding([3], [1, 2, 1, 1], [0, 7]),
    globals: [0, 7],
    position: t5Hooks,
  },
]

describe("masked attention kinds equal dense attention with the same explicit mask", () => {
  it.each(cases.flatMap((c) => [0, 1].map((layer) => ({ ...c, layer }))))("$name, layer $layer: forward and gradients", ({ spec, pattern, globals, position, layer }) => {
    const t = 23
    const x = tf.randomNormal([2, t, dims.width], 0, 1, "float32", 1) as tf.Tensor3D
    const params = randomParams(spec, dims, 2)
    const hooks = position?.() ?? {}
    const r = tf.randomNormal([2, t, dims.width], 0, 1, "float32", 3)
    const names = Object.keys(params)
    const run = (f: (x: tf.Tensor3D, p: Record<string, tf.Tensor>) => tf.Tensor3D) => {
      const loss = (xi: tf.Tensor, ...ps: tf.Tensor[]) => tf.sum(tf.mul(f(xi as tf.Tensor3D, Object.fromEntries(names.map((n, i) => [n, ps[i]!]))), r)) as tf.Scalar
      const { value, grads } = tf.valueAndGrads(loss)([x, ...names.map((n) => params[n]!)])
      return { out: f(x, params), value, grads }
    }
    const kind = run((xi, p) => attentionApply(spec).apply(viewOf(p), xi, spec, ctxOf(dims, layer, hooks)))
    const ref = run((xi, p) => denseReference(xi, viewOf(p), spec.heads, (h, i, j) => pattern(layer, h, i, j), hooks, globals))
    expect(maxDiff(kind.out, ref.out)).toBeLessThan(1e-4)
    kind.grads.forEach((g, i) => expect(maxDiff(g, ref.grads[i]!)).toBeLessThan(1e-3))
  })
})
