import * as tf from "@tensorflow/tfjs"
import { beforeAll, describe, expect, it } from "vitest"
import { full } from "../../src/attention/full.js"
import type { Dims } from "../../dsl/kind.js"
import { full as fullKind } from "../../dsl/kinds/attention/full.js"
import { alibi as alibiKind } from "../../dsl/kinds/posenc/alibi.js"
import { rope as ropeKind } from "../../dsl/kinds/posenc/rope.js"
import { sinusoidal as sinusoidalKind } from "../../dsl/kinds/posenc/sinusoidal.js"
import { t5 as t5Kind } from "../../dsl/kinds/posenc/t5.js"
import { xpos as xposKind } from "../../dsl/kinds/posenc/xpos.js"
import type { LayerCtx, ParamView, PositionHooks } from "../../src/model/kind.js"
import { alibi, alibiSlopes } from "../../src/posenc/alibi.js"
import { rope } from "../../src/posenc/rope.js"
import { sinusoidal } from "../../src/posenc/sinusoidal.js"
import { t5, t5Bucket } from "../../src/posenc/t5.js"
import { xpos } from "../../src/posenc/xpos.js"
import { Rng } from "../../src/random/rng.js"

/**
 * Every position scheme against a naive float64 computation written from its paper's
 * formula, on random inputs.
 */
beforeAll(async () => {
  await tf.setBackend("cpu")
})

const dims: Dims = { vocab: 10, width: 24, context: 16, layers: 1 }
const noParams: ParamView = (name) => {
  throw new Error(`unexpected parameter ${name}`)
}

const randn = (shape: number[], seed: number): tf.Tensor => {
  const rng = Rng.fromSeed(seed)
  return tf.tensor(Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.nextNormal()), shape)
}

/** A [B, H, T, dh] tensor as nested arrays. */
const nested4 = (t: tf.Tensor): number[][][][] => t.arraySync() as number[][][][]

const expectClose = (got: number, want: number, tol = 1e-5) => expect(Math.abs(got - want)).toBeLessThanOrEqual(tol * (1 + Math.abs(want)))

/** Multiplies the complex number re + i·im by e^{i·angle}. */
const rotateComplex = (re: number, im: number, angle: number): [number, number] => [
  re * Math.cos(angle) - im * Math.sin(angle),
  re * Math.sin(angle) + im * Math.cos(angle),
]

/**
 * Rotary reference: dimensions j and j + d/2 (rotate_half) form the complex number
 * x_j + i·x_{j+d/2}, which is multiplied by scale_j(pos)·e^{i·pos·θ_j}, θ_j = base^(-2j/d).
 */
const rotaryReference = (x: number[], pos: number, d: number, base: number, scale: (j: number) => number = () => 1): number[] => {
  const out = [...x]
  for (let j = 0; j < d / 2; j++) {
    const [re, im] = rotateComplex(x[j]!, x[j + d / 2]!, pos * base ** ((-2 * j) / d))
    out[j] = re * scale(j)
    out[j + d / 2] = im * scale(j)
  }
  return out
}

const queryKey = (hooks: PositionHooks) => {
  if (hooks.queryKey === undefined) throw new Error("scheme has no queryKey hook")
  return hooks.queryKey
}

describe("rope", () => {
  const [b, h, t, dh] = [2, 3, 5, 8]
  const q = randn([b, h, t, dh], 1) as tf.Tensor4D
  const k = randn([b, h, t, dh], 2) as tf.Tensor4D

  it.each([
    ["full head", undefined],
    ["partial (4 of 8 dims)", 4],
  ] as const)("equals explicit complex rotation (%s)", (_name, rotated) => {
    const spec = ropeKind.make(rotated === undefined ? {} : { dims: rotated })
    const [qr, kr] = queryKey(rope.hooks!(noParams, spec, dims))(q, k, 7, 3)
    const d = rotated ?? dh
    for (const [input, output, offset] of [
      [q, qr, 7],
      [k, kr, 3],
    ] as const) {
      const x = nested4(input)
      const y = nested4(output)
      for (let bi = 0; bi < b; bi++)
        for (let hi = 0; hi < h; hi++)
          for (let ti = 0; ti < t; ti++) {
            const want = rotaryReference(x[bi]![hi]![ti]!, offset + ti, d, 10000)
            want.forEach((w, i) => expectClose(y[bi]![hi]![ti]![i]!, w))
          }
    }
  })

  it("gives q·k scores that depend only on the distance between positions (shift test)", () => {
    const hooks = rope.hooks!(noParams, ropeKind.make(), dims)
    const qv = randn([1, 1, 1, dh], 3) as tf.Tensor4D
    const kv = randn([1, 1, 1, dh], 4) as tf.Tensor4D
    const score = (n: number, m: number): number => {
      const [qa] = queryKey(hooks)(qv, kv, n, n)
      const [, kb] = queryKey(hooks)(qv, kv, m, m)
      return tf.sum(tf.mul(qa, kb)).arraySync() as number
    }
    for (const distance of [0, 1, 5, 37]) {
      const at0 = score(distance, 0)
      for (const shift of [1, 9, 250, 3000]) expectClose(score(distance + shift, shift), at0, 1e-4)
    }
    // Different distances give different scores, so the equalities above are not vacuous.
    expect(Math.abs(score(5, 0) - score(1, 0))).toBeGreaterThan(1e-3)
  })
})

describe("xpos", () => {
  const [b, h, t, dh] = [1, 2, 4, 8]
  const q = randn([b, h, t, dh], 5) as tf.Tensor4D
  const k = randn([b, h, t, dh], 6) as tf.Tensor4D
  // Paper (Sun et al. 2022, eq. 11): ζ_i = (i/(d/2) + γ)/(1 + γ), γ = 0.4.
  const zeta = (i: number) => (i / (dh / 2) + 0.4) / 1.4

  it("scales query pair i by ζ_i^(n/512) and key pair i by ζ_i^(-m/512) on top of the rotation", () => {
    const [qOffset, kOffset] = [900, 640]
    const [qr, kr] = queryKey(xpos.hooks!(noParams, xposKind.make(), dims))(q, k, qOffset, kOffset)
    const [x, y, kx, ky] = [nested4(q), nested4(qr), nested4(k), nested4(kr)]
    for (let hi = 0; hi < h; hi++)
      for (let ti = 0; ti < t; ti++) {
        const n = qOffset + ti
        const m = kOffset + ti
        rotaryReference(x[0]![hi]![ti]!, n, dh, 10000, (i) => zeta(i) ** (n / 512)).forEach((w, i) => expectClose(y[0]![hi]![ti]![i]!, w))
        rotaryReference(kx[0]![hi]![ti]!, m, dh, 10000, (i) => zeta(i) ** (-m / 512)).forEach((w, i) => expectClose(ky[0]![hi]![ti]![i]!, w))
      }
  })

  it("decays the score of pair i by ζ_i^((n-m)/512) relative to RoPE", () => {
    const hooks = xpos.hooks!(noParams, xposKind.make(), dims)
    const ropeHooks = rope.hooks!(noParams, ropeKind.make(), dims)
    const qv = randn([1, 1, 1, dh], 7) as tf.Tensor4D
    const kv = randn([1, 1, 1, dh], 8) as tf.Tensor4D
    const [n, m] = [1500, 300]
    const [qx] = queryKey(hooks)(qv, kv, n, n)
    const [, kx] = queryKey(hooks)(qv, kv, m, m)
    const [qr] = queryKey(ropeHooks)(qv, kv, n, n)
    const [, kr] = queryKey(ropeHooks)(qv, kv, m, m)
    const prod = (a: tf.Tensor, c: tf.Tensor) => (tf.mul(a, c).reshape([dh]).arraySync() as number[])
    const xposTerms = prod(qx, kx)
    const ropeTerms = prod(qr, kr)
    let want = 0
    for (let i = 0; i < dh / 2; i++) want += zeta(i) ** ((n - m) / 512) * (ropeTerms[i]! + ropeTerms[i + dh / 2]!)
    expectClose(xposTerms.reduce((s, v) => s + v, 0), want, 1e-4)
  })
})

describe("alibi", () => {
  it("uses the published slopes for 8 heads and for 6 and 12 (not powers of two)", () => {
    expect(alibiSlopes(8)).toEqual([1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32, 1 / 64, 1 / 128, 1 / 256])
    // get_slopes(6) of the reference implementation: the 4-head slopes, then slopes 1 and 3 of 8 heads.
    expect(alibiSlopes(6)).toEqual([1 / 4, 1 / 16, 1 / 64, 1 / 256, 1 / 2, 1 / 8])
    const twelve = alibiSlopes(12)
    expect(twelve.slice(0, 8)).toEqual(alibiSlopes(8))
    ;[2 ** -0.5, 2 ** -1.5, 2 ** -2.5, 2 ** -3.5].forEach((s, i) => expectClose(twelve[8 + i]!, s, 1e-12))
  })

  it.each([8, 6])("adds an explicit bias matrix -m_h·(n - m) (%i heads)", (heads) => {
    const slopes = heads === 8 ? [1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32, 1 / 64, 1 / 128, 1 / 256] : [1 / 4, 1 / 16, 1 / 64, 1 / 256, 1 / 2, 1 / 8]
    const hooks = alibi.hooks!(noParams, alibiKind.make(), dims)
    const [tq, tk, qOffset, kOffset] = [3, 7, 4, 0]
    const bias = hooks.scoreBias!(heads, tq, tk, qOffset, kOffset).arraySync()
    for (let hi = 0; hi < heads; hi++)
      for (let i = 0; i < tq; i++) for (let j = 0; j <= qOffset + i; j++) expectClose(bias[hi]![i]![j]!, -slopes[hi]! * (qOffset + i - j), 1e-6)
  })
})

describe("t5", () => {
  it("assigns the hand-computed causal buckets (32 buckets, max distance 128)", () => {
    // Below 16 each distance is its own bucket; from 16 on, 16 + ⌊16·log(n/16)/log(8)⌋, capped at 31.
    const expected: Array<[number, number]> = [
      [-3, 0], [0, 0], [1, 1], [7, 7], [15, 15], [16, 16], [20, 17], [23, 18], [31, 21], [32, 21],
      [45, 23], [64, 26], [100, 30], [127, 31], [128, 31], [500, 31],
    ]
    for (const [distance, bucket] of expected) expect([distance, t5Bucket(distance, 32, 128)]).toEqual([distance, bucket])
  })

  it("looks its bias up in one [buckets, heads] table by bucket of n - m", () => {
    const spec = t5Kind.make({ heads: 3, buckets: 8, maxDistance: 20 })
    const table = randn([8, 3], 9)
    const hooks = t5.hooks!((name) => (name === "table" ? table : noParams(name)), spec, dims)
    // 8 buckets, max distance 20: 0-3 exact, then 4 + ⌊4·log(n/4)/log(5)⌋ up to bucket 7.
    const buckets = [0, 1, 2, 3, 4, 4, 5, 5, 5, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7]
    const [tq, tk, qOffset, kOffset] = [3, 25, 22, 0]
    const bias = hooks.scoreBias!(3, tq, tk, qOffset, kOffset).arraySync()
    const rows = table.arraySync() as number[][]
    for (let hi = 0; hi < 3; hi++)
      for (let i = 0; i < tq; i++) for (let j = 0; j <= qOffset + i && j < tk; j++) expect(bias[hi]![i]![j]!).toBe(rows[buckets[qOffset + i - j]!]![hi]!)
  })
})

describe("sinusoidal", () => {
  const [t, d, offset] = [6, 10, 13]
  const pe = (pos: number, i: number) => (i % 2 === 0 ? Math.sin(pos / 10000 ** (i / d)) : Math.cos(pos / 10000 ** ((i - 1) / d)))

  it.each([true, false])("adds PE(n, 2i) = sin(n/10000^(2i/d)), PE(n, 2i+1) = cos(…) to the embeddings (scaled by √d: %s)", (scaleEmbeddings) => {
    const x = randn([2, t, d], 10) as tf.Tensor3D
    const y = sinusoidal.embed!(noParams, x, sinusoidalKind.make({ scaleEmbeddings }), offset).arraySync()
    const xs = x.arraySync()
    for (let bi = 0; bi < 2; bi++)
      for (let ti = 0; ti < t; ti++)
        for (let i = 0; i < d; i++) expectClose(y[bi]![ti]![i]!, xs[bi]![ti]![i]! * (scaleEmbeddings ? Math.sqrt(d) : 1) + pe(offset + ti, i))
  })
})

describe("schemes inside dense attention", () => {
  const [t, width, heads] = [6, 12, 3]
  const dh = width / heads
  const attnDims: Dims = { vocab: 10, width, context: t, layers: 1 }
  const rng = Rng.fromSeed(12)
  const weights = Object.fromEntries(["wq", "wk", "wv", "wo"].map((n) => [n, Array.from({ length: width * width }, () => 0.5 * rng.nextNormal())]))
  const x = Array.from({ length: t }, () => Array.from({ length: width }, () => rng.nextNormal()))
  const table = randn([8, heads], 13)
  const t5Spec = t5Kind.make({ heads, buckets: 8, maxDistance: 20 })
  const zeta = (i: number) => (i / (dh / 2) + 0.4) / 1.4
  const project = (w: number[]) => x.map((row) => Array.from({ length: width }, (_, j) => row.reduce((s, v, i) => s + v * w[i * width + j]!, 0)))

  /** Naive causal attention: per head, score = q'·k'/√dh + bias, softmax over keys up to the query. */
  const reference = (
    transform: (v: number[], pos: number, role: "q" | "k") => number[],
    bias: (head: number, n: number, m: number) => number,
  ): number[][] => {
    const [q, k, v] = [project(weights["wq"]!), project(weights["wk"]!), project(weights["wv"]!)]
    const out = x.map(() => new Array<number>(width).fill(0))
    for (let h = 0; h < heads; h++) {
      const head = (row: number[]) => row.slice(h * dh, (h + 1) * dh)
      for (let n = 0; n < t; n++) {
        const qn = transform(head(q[n]!), n, "q")
        const scores = Array.from({ length: n + 1 }, (_, m) => {
          const km = transform(head(k[m]!), m, "k")
          return qn.reduce((s, qi, i) => s + qi * km[i]!, 0) / Math.sqrt(dh) + bias(h, n, m)
        })
        const top = Math.max(...scores)
        const e = scores.map((s) => Math.exp(s - top))
        const z = e.reduce((a, b) => a + b, 0)
        for (let m = 0; m <= n; m++) for (let i = 0; i < dh; i++) out[n]![h * dh + i]! += (e[m]! / z) * v[m]![h * dh + i]!
      }
    }
    return out.map((row) => Array.from({ length: width }, (_, j) => row.reduce((s, a, i) => s + a * weights["wo"]![i * width + j]!, 0)))
  }

  const identity = (v: number[]) => v
  const noBias = () => 0
  const rows = table.arraySync() as number[][]
  const cases: Array<[string, PositionHooks, (v: number[], pos: number, role: "q" | "k") => number[], (h: number, n: number, m: number) => number]> = [
    ["rope", rope.hooks!(noParams, ropeKind.make(), attnDims), (v, pos) => rotaryReference(v, pos, dh, 10000), noBias],
    ["rope(dims=2)", rope.hooks!(noParams, ropeKind.make({ dims: 2 }), attnDims), (v, pos) => rotaryReference(v, pos, 2, 10000), noBias],
    ["xpos", xpos.hooks!(noParams, xposKind.make({ scaleBase: 4 }), attnDims), (v, pos, role) => rotaryReference(v, pos, dh, 10000, (i) => zeta(i) ** ((role === "q" ? pos : -pos) / 4)), noBias],
    // get_slopes(3): the 2-head slopes 2^-4, 2^-8, then the first 4-head slope 2^-2.
    ["alibi", alibi.hooks!(noParams, alibiKind.make(), attnDims), identity, (h, n, m) => -[1 / 16, 1 / 256, 1 / 4][h]! * (n - m)],
    ["t5", t5.hooks!(() => table, t5Spec, attnDims), identity, (h, n, m) => rows[t5Bucket(n - m, 8, 20)]![h]!],
  ]

  it.each(cases)("%s: the attention output equals a naive float64 computation", (_name, position, transform, bias) => {
    const ctx: LayerCtx = { dims: attnDims, layer: 0, training: false, position, offset: 0, dropout: (v) => v }
    const spec = fullKind.make({ heads, bias: false })
    const view: ParamView = (n) => tf.tensor2d(weights[n]!, [width, width])
    const got = full.apply(view, tf.tensor3d([x], [1, t, width]), spec, ctx).arraySync()[0]!
    const want = reference(transform, bias)
    for (let n = 0; n < t; n++) for (let j = 0; j < width; j++) expectClose(got[n]![j]!, want[n]![j]!, 1e-4)
  })
})
