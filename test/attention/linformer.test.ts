import * as tf from "@tensorflow/tfjs"
import { beforeAll, describe, expect, it } from "vitest"
import { attention } from "../../dsl/index.js"
import type { AttentionSpec } from "../../dsl/kinds/attention/index.js"
import { attentionApply } from "../../src/attention/index.js"
import type { Dims } from "../../dsl/kind.js"
import { ctxOf, maxDiff, randomParams, viewOf } from "./helpers.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

type M = number[][]
const mm = (a: M, b: M): M => a.map((row) => b[0]!.map((_, j) => row.reduce((s, x, k) => s + x * b[k]![j]!, 0)))
const tr = (a: M): M => a[0]!.map((_, j) => a.map((row) => row[j]!))
const softmaxRows = (a: M): M =>
  a.map((row) => {
    const m = Math.max(...row)
    const e = row.map((x) => Math.exp(x - m))
    const s = e.reduce((x, y) => x + y, 0)
    return e.map((x) => x / s)
  })
const cols = (a: M, from: number, to: number): M => a.map((row) => row.slice(from, to))
const rows = (a: M, from: number, to: number): M => a.slice(from, to)

const dims: Dims = { vocab: 11, width: 8, context: 12, layers: 2 }
const heads = 2
const dh = dims.width / heads

/** E_h and F_h [k, n] of head h under each sharing option, read from the parameter record. */
const projections = (spec: AttentionSpec & { sharing: string; k: number }, p: Record<string, tf.Tensor>, h: number): [M, M] => {
  const get = (name: string) => p[name]!.arraySync() as M | M[]
  switch (spec.sharing) {
    case "none":
      return [(get("layer.e") as M[])[h]!, (get("layer.f") as M[])[h]!]
    case "headwise":
      return [get("layer.e") as M, get("layer.f") as M]
    case "kv":
      return [get("layer.e") as M, get("layer.e") as M]
    default:
      return [get(`shared.linformer.k${spec.k}.e`) as M, get(`shared.linformer.k${spec.k}.e`) as M]
  }
}

/** The layer in float64 loops: per head, Q, K, V, the Linformer attention of each query row, then Wo. */
const naive = (spec: AttentionSpec, x: M, p: Record<string, tf.Tensor>, row: (q: number[], i: number, k: M, v: M, e: M, f: M) => number[]): M => {
  const w = (n: string) => p[`layer.${n}`]!.arraySync() as M
  const b = (n: string) => p[`layer.${n}`]!.arraySync() as unknown as number[]
  const lin = (wn: string, bn: string) => mm(x, w(wn)).map((r) => r.map((v, j) => v + b(bn)[j]!))
  const [q, k, v] = [lin("wq", "bq"), lin("wk", "bk"), lin("wv", "bv")]
  const out: M = x.map(() => [])
  for (let h = 0; h < heads; h++) {
    const [e, f] = projections(spec as AttentionSpec & { sharing: string; k: number }, p, h)
    const head = (a: M) => cols(a, h * dh, (h + 1) * dh)
    const [qh, kh, vh] = [head(q), head(k), head(v)]
    qh.forEach((qi, i) => out[i]!.push(...row(qi.map((z) => z / Math.sqrt(dh)), i, kh, vh, e, f)))
  }
  return mm(out, w("wo")).map((r) => r.map((z, j) => z + b("bo")[j]!))
}

const attendRow = (q: number[], keys: M, values: M): number[] => mm(softmaxRows(mm([q], tr(keys))), values)[0]!

/** softmax(q (E K)ᵀ) (F V) with E, F cut to the sequence's length. */
const published = (t: number) => (q: number[], _i: number, k: M, v: M, e: M, f: M) => attendRow(q, mm(cols(e, 0, t), k), mm(cols(f, 0, t), v))

/** The causal variant: the compressed complete blocks before the query's own, then its own block up to it. */
const causal = (block: number) => (q: number[], i: number, k: M, v: M, e: M, f: M) => {
  const start = Math.floor(i / block) * block
  const keys = [...(start > 0 ? mm(cols(e, 0, start), rows(k, 0, start)) : []), ...rows(k, start, i + 1)]
  const values = [...(start > 0 ? mm(cols(f, 0, start), rows(v, 0, start)) : []), ...rows(v, start, i + 1)]
  return attendRow(q, keys, values)
}

describe("linformer equals its explicit formula", () => {
  const sharings = ["none", "headwise", "kv", "layerwise"] as const
  const t = 10
  const x = tf.randomNormal([1, t, dims.width], 0, 1, "float32", 5) as tf.Tensor3D
  const check = (spec: AttentionSpec, row: Parameters<typeof naive>[3]) => {
    const p = randomParams(spec, dims, 9)
    const got = (attentionApply(spec).apply(viewOf(p), x, spec, ctxOf(dims, 0)).arraySync() as M[])[0]!
    const want = naive(spec, (x.arraySync() as M[])[0]!, p, row)
    got.forEach((r, i) => r.forEach((z, j) => expect(z).toBeCloseTo(want[i]![j]!, 4)))
  }
  it.each(sharings)("published, sharing %s: softmax(Q (E K)ᵀ/√d) (F V)", (sharing) => {
    check(attention("linformer", { heads, k: 3, sharing }), published(t))
  })
  it.each(sharings)("causal variant, sharing %s: compressed earlier blocks plus the causal own block", (sharing) => {
    check(attention("linformer-causal", { heads, k: 3, block: 4, sharing }), causal(4))
  })
})

describe("linformer gradients equal those of the explicit formula", () => {
  const t = 10
  /** The formula in tf ops, row by row, for headwise E and F. */
  const formula = (block: number | undefined) => (x: tf.Tensor3D, p: (n: string) => tf.Tensor): tf.Tensor3D => {
    const x2 = x.reshape([t, dims.width])
    const lin = (n: string) => tf.add(tf.matMul(x2, p(`w${n}`)), p(`b${n}`))
    const [q, k, v] = [tf.div(lin("q"), Math.sqrt(dh)), lin("k"), lin("v")]
    const heads = Array.from({ length: 2 }, (_, h) => {
      const head = (a: tf.Tensor) => tf.slice(a, [0, h * dh], [t, dh])
      const rowsOut = Array.from({ length: t }, (_, i) => {
        const start = block === undefined ? t : Math.floor(i / block) * block
        const end = block === undefined ? t : i + 1
        const parts = (m: string, a: tf.Tensor) => [
          ...(start > 0 ? [tf.matMul(tf.slice(p(m), [0, 0], [3, start]), tf.slice(head(a), [0, 0], [start, dh]))] : []),
          ...(end > start ? [tf.slice(head(a), [start, 0], [end - start, dh])] : []),
        ]
        const weights = tf.softmax(tf.matMul(tf.slice(head(q), [i, 0], [1, dh]), tf.concat(parts("e", k), 0), false, true))
        return tf.matMul(weights, tf.concat(parts("f", v), 0))
      })
      return tf.concat(rowsOut, 0)
    })
    return tf.add(tf.matMul(tf.concat(heads, 1), p("wo")), p("bo")).reshape([1, t, dims.width]) as tf.Tensor3D
  }
  it.each([
    ["linformer", attention("linformer", { heads, k: 3, sharing: "headwise" }), formula(undefined)],
    ["linformer-causal", attention("linformer-causal", { heads, k: 3, block: 4, sharing: "headwise" }), formula(4)],
  ] as const)("%s", (_name, spec, reference) => {
    const x = tf.randomNormal([1, t, dims.width], 0, 1, "float32", 6) as tf.Tensor3D
    const p = randomParams(spec, dims, 4)
    const names = Object.keys(p)
    const r = tf.randomNormal([1, t, dims.width], 0, 1, "float32", 8)
    const grads = (f: (x: tf.Tensor3D, p: (n: string) => tf.Tensor) => tf.Tensor3D) =>
      tf.grads((xi: tf.Tensor, ...ps: tf.Tensor[]) => tf.sum(tf.mul(f(xi as tf.Tensor3D, viewOf(Object.fromEntries(names.map((n, i) => [n, ps[i]!])))), r)) as tf.Scalar)([
        x,
        ...names.map((n) => p[n]!),
      ])
    const got = grads((xi, view) => attentionApply(spec).apply(view, xi, spec, ctxOf(dims, 0)))
    const want = grads(reference)
    got.forEach((g, i) => expect(maxDiff(g, want[i]!)).toBeLessThan(1e-4))
  })
})
