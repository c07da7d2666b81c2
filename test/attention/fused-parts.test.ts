import * as tf from "@tensorflow/tfjs"
import { afterEach, expect, it, vi } from "vitest"
import { block, decoder, depth, ffn, posenc, type DecoderSpec } from "../../dsl/index.js"
import type { AttentionKindTag } from "../../dsl/kinds/attention/index.js"
import { posencKinds, type PosencSpec, type PosencTag } from "../../dsl/kinds/posenc/index.js"
import { fusedAttentionWithLse, type KeyRanges } from "../../src/backend/fused.js"
import type { NativeBackend } from "../../src/backend/native/index.js"
import { compile } from "../../src/model/index.js"
import { Rng } from "../../src/random/rng.js"
import { describeNative } from "../backend/native-suite.js"
import { representative, uneven } from "./examples.js"
import { centralDifferenceErrors } from "./helpers.js"

/**
 * The fused kernel with a range of keys per query (src/backend/fused.ts), against masked
 * attention composed from tfjs ops and a float64 one, and every attention kind under every
 * position scheme, fused (as parts of one softmax where the kind's keys are spread out,
 * src/attention/fused-parts.ts) against the composed path.
 */

type Shape = readonly [b: number, h: number, t: number, tk: number, dh: number]

/** Random ranges within [0, tk], every fifth query seeing no key. */
const randomRanges = (t: number, tk: number, seed: number): KeyRanges => {
  const rng = Rng.fromSeed(seed)
  const lo = new Int32Array(t)
  const hi = new Int32Array(t)
  for (let i = 0; i < t; i++) {
    const a = rng.nextInt(tk)
    lo[i] = a
    hi[i] = i % 5 === 4 ? a : a + 1 + rng.nextInt(tk - a)
  }
  return { lo, hi }
}

const seesAny = (r: KeyRanges, i: number) => r.lo[i]! < r.hi[i]!

/** Masked attention by tfjs ops: [out, lse], a row that sees no key 0 and (for the loss) lse 0. */
const composed = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, r: KeyRanges): [tf.Tensor4D, tf.Tensor3D] => {
  const [, , t] = q.shape
  const tk = k.shape[2]
  const mask = new Float32Array(t * tk).fill(-1e9)
  const live = new Float32Array(t)
  for (let i = 0; i < t; i++) {
    for (let j = r.lo[i]!; j < r.hi[i]!; j++) mask[i * tk + j] = 0
    live[i] = seesAny(r, i) ? 1 : 0
  }
  const scores = tf.add(tf.matMul(q, k, false, true), tf.tensor2d(mask, [t, tk]))
  const out = tf.mul(tf.matMul(tf.softmax(scores), v), tf.tensor3d(live, [t, 1, 1]).reshape([1, 1, t, 1]))
  return [out as tf.Tensor4D, tf.mul(tf.logSumExp(scores, 3), tf.tensor1d(live)) as tf.Tensor3D]
}

const fused = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, r: KeyRanges): [tf.Tensor4D, tf.Tensor3D] => {
  const [out, lse] = fusedAttentionWithLse(q, k, v, { ranges: r })!
  // −∞ where a row sees nothing: selected away, so the loss (and its gradient) leaves it out.
  const live = tf.tensor1d(Array.from({ length: q.shape[2] }, (_, i) => seesAny(r, i)), "bool")
  return [out, tf.where(tf.broadcastTo(live, lse.shape), lse, tf.zerosLike(lse)) as tf.Tensor3D]
}

const inputs = ([b, h, t, tk, dh]: Shape, seed: number): [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D] => [
  tf.randomNormal([b, h, t, dh], 0, 1, "float32", seed) as tf.Tensor4D,
  tf.randomNormal([b, h, tk, dh], 0, 1, "float32", seed + 1) as tf.Tensor4D,
  tf.randomNormal([b, h, tk, dh], 0, 1, "float32", seed + 2) as tf.Tensor4D,
]

/** Σ out·w + Σ lse·u and its gradients for q, k, v: lse's gradient enters the backward kernel too. */
const lossAndGrads = (attend: typeof composed, qkv: tf.Tensor4D[], r: KeyRanges, w: tf.Tensor, u: tf.Tensor): tf.Tensor[] => {
  const f = (q: tf.Tensor, k: tf.Tensor, v: tf.Tensor) => {
    const [out, lse] = attend(q as tf.Tensor4D, k as tf.Tensor4D, v as tf.Tensor4D, r)
    return tf.add(tf.sum(tf.mul(out, w)), tf.sum(tf.mul(lse, u))) as tf.Scalar
  }
  const { value, grads } = tf.valueAndGrads(f)(qkv)
  return [value, ...grads]
}

const relDiff = (a: tf.Tensor, b: tf.Tensor, scale = b): number => tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]! / tf.max(tf.abs(scale)).dataSync()[0]!)

/** The same loss in float64, naively: softmax over each query's range. */
const naiveLoss = (q: Float64Array, k: Float64Array, v: Float64Array, w: Float64Array, u: Float64Array, [b, h, t, tk, dh]: Shape, r: KeyRanges): number => {
  let loss = 0
  for (let bh = 0; bh < b * h; bh++) {
    for (let i = 0; i < t; i++) {
      if (!seesAny(r, i)) continue
      const scores: number[] = []
      for (let j = r.lo[i]!; j < r.hi[i]!; j++) {
        let s = 0
        for (let d = 0; d < dh; d++) s += q[(bh * t + i) * dh + d]! * k[(bh * tk + j) * dh + d]!
        scores.push(s)
      }
      const m = Math.max(...scores)
      const e = scores.map((s) => Math.exp(s - m))
      const z = e.reduce((a, c) => a + c, 0)
      loss += (m + Math.log(z)) * u[bh * t + i]!
      for (let d = 0; d < dh; d++) {
        let out = 0
        e.forEach((x, c) => (out += (x / z) * v[(bh * tk + r.lo[i]! + c) * dh + d]!))
        loss += out * w[(bh * t + i) * dh + d]!
      }
    }
  }
  return loss
}

/** A scheme's spec for a model with `heads` heads. */
const schemeFor = (kind: PosencTag, heads: number): PosencSpec => (kind === "t5" ? posenc("t5", { heads, buckets: 8, maxDistance: 16 }) : (posenc as (k: PosencTag) => PosencSpec)(kind))

/**
 * Where the kernel runs, stated from the kernel's reach rather than read from the code that
 * decides it: everywhere but T5's learned bias, and ALiBi's distances only where the keys stay
 * in sequence order (dense attention; the examples' windows are dilated in some heads, which
 * reorders them; Linformer's compressed keys take no bias at all).
 */
const fuses = (kind: AttentionKindTag, scheme: PosencTag): boolean => scheme !== "t5" && (scheme !== "alibi" || kind === "full")

/** Compressed keys have no position, so Linformer takes no score-bias scheme. */
const accepts = (kind: AttentionKindTag, scheme: PosencTag) => !(kind.startsWith("linformer") && (scheme === "alibi" || scheme === "t5"))

describeNative("the fused attention kernel over ranges of keys, and the kinds it computes as parts", () => {
  afterEach(() => {
    delete process.env["TFJS_NATIVE_FUSED_ATTENTION"]
  })

  // Queries and keys of other lengths, one block of 96 to several, head sizes off and on whole tiles (16).
  const shapes: readonly Shape[] = [
    [1, 1, 9, 7, 3],
    [2, 3, 37, 50, 5],
    [1, 2, 130, 201, 16],
    [1, 3, 300, 120, 24],
  ]

  it.each(shapes.map((s) => [s.join("×"), s] as const))("[%s], random ranges, some empty: out, lse and the gradients of both equal masked attention's within float32 rounding", async (_label, shape) => {
    await tf.setBackend("native")
    const before = tf.memory().numTensors
    const [b, h, t, , dh] = shape
    const r = randomRanges(t, shape[3], t)
    const qkv = inputs(shape, 3)
    const w = tf.randomNormal([b, h, t, dh], 0, 1, "float32", 4)
    const u = tf.randomNormal([b, h, t], 0, 1, "float32", 5)
    const want = tf.tidy(() => lossAndGrads(composed, qkv, r, w, u))
    const got = tf.tidy(() => lossAndGrads(fused, qkv, r, w, u))
    const [wantOut, gotOut] = tf.tidy(() => [composed(...qkv, r), fused(...qkv, r)])
    expect(relDiff(gotOut[0], wantOut[0])).toBeLessThan(1e-5)
    expect(relDiff(gotOut[1], wantOut[1])).toBeLessThan(1e-5)
    // Rows that see nothing output exactly zero.
    const out = gotOut[0].arraySync()
    for (let i = 4; i < t; i += 5) expect(out[0]![0]![i]!.every((x) => x === 0)).toBe(true)
    got.forEach((g, i) => expect(relDiff(g, want[i]!), ["loss", "q", "k", "v"][i]).toBeLessThan(1e-5))
    tf.dispose([...qkv, w, u, ...want, ...got, ...wantOut, ...gotOut])
    expect(tf.memory().numTensors).toBe(before)
  })

  it("its gradients, lse's included, equal float64 central differences of naive attention over the ranges", async () => {
    await tf.setBackend("native")
    const shape: Shape = [1, 2, 11, 8, 3]
    const [b, h, t, , dh] = shape
    const r = randomRanges(t, shape[3], 7)
    const qkv = inputs(shape, 6)
    const w = tf.randomNormal([b, h, t, dh], 0, 1, "float32", 8)
    const u = tf.randomNormal([b, h, t], 0, 1, "float32", 9)
    const [, ...grads] = lossAndGrads(fused, qkv, r, w, u)
    const values = qkv.map((x) => Float64Array.from(x.dataSync()))
    const [wv, uv] = [Float64Array.from(w.dataSync()), Float64Array.from(u.dataSync())]
    const errors = centralDifferenceErrors(values, grads.map((g) => g!.dataSync()), () => naiveLoss(values[0]!, values[1]!, values[2]!, wv, uv, shape, r))
    errors.forEach((e, which) => expect(e, "qkv"[which]).toBeLessThan(1e-5))
    tf.dispose([...qkv, w, u, ...grads])
  })

  const kinds = Object.keys(representative) as AttentionKindTag[]
  const schemes = Object.keys(posencKinds) as PosencTag[]
  const model = (examples: typeof representative, kind: AttentionKindTag, scheme: PosencTag): DecoderSpec =>
    decoder({
      vocab: 23,
      width: 16,
      context: 29,
      posenc: schemeFor(scheme, examples[kind].heads),
      // The examples' per-layer options: two layers in the representative ones, three in the uneven.
      layers: depth(examples === representative ? 2 : 3, block({ attention: examples[kind], ffn: ffn("gelu", { hidden: 24 }) })),
      allowNonCausal: kind === "linformer",
    })
  const cases = kinds.flatMap((kind) =>
    schemes.filter((s) => accepts(kind, s)).flatMap((scheme) => [
      ["representative", kind, scheme],
      ["uneven", kind, scheme],
    ] as const),
  )

  it.each(cases)("%s %s, %s: a training loss and every parameter's gradient equal the composed path's; the kernel runs exactly where it reaches", async (which, kind, scheme) => {
    await tf.setBackend("native")
    const before = tf.memory().numTensors
    const spec = model(which === "representative" ? representative : uneven, kind, scheme)
    const m = compile(spec)
    const params = m.init(3)
    const rng = Rng.fromSeed(4)
    const tokens = tf.tensor2d(Int32Array.from({ length: 2 * (spec.context + 1) }, () => rng.nextInt(spec.vocab)), [2, spec.context + 1], "int32")
    const batch = { tokens, mask: tf.ones([2, spec.context]) as tf.Tensor2D }
    const names = Object.keys(params)
    const run = () => {
      const { value, grads } = tf.valueAndGrads((...ps: tf.Tensor[]) => m.loss(Object.fromEntries(names.map((n, i) => [n, ps[i]!])), batch, { training: true }))(names.map((n) => params[n]!))
      return [value, ...grads]
    }
    const kernel = vi.spyOn((tf.backend() as NativeBackend).addon, "attention")
    process.env["TFJS_NATIVE_FUSED_ATTENTION"] = "0"
    const want = run()
    expect(kernel).not.toHaveBeenCalled()
    process.env["TFJS_NATIVE_FUSED_ATTENTION"] = "1"
    const got = run()
    expect(kernel.mock.calls.length > 0, "the kernel ran").toBe(fuses(kind, scheme))
    kernel.mockRestore()
    // Relative to the largest gradient of all: some (the key bias's) are zero but for rounding.
    const scale = Math.max(...want.slice(1).map((g) => tf.tidy(() => tf.max(tf.abs(g)).dataSync()[0]!)))
    expect(relDiff(got[0]!, want[0]!)).toBeLessThan(1e-5)
    got.slice(1).forEach((g, i) => expect(tf.tidy(() => tf.max(tf.abs(tf.sub(g, want[i + 1]!))).dataSync()[0]!) / scale, names[i]).toBeLessThan(1e-5))
    tf.dispose([...want, ...got, tokens, batch.mask, ...Object.values(params)])
    expect(tf.memory().numTensors).toBe(before)
  })
})
