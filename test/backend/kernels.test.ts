import * as tf from "@tensorflow/tfjs"
import { beforeAll, describe, expect, it, vi } from "vitest"
import { activation } from "../../dsl/kinds/activation/index.js"
import { activationApply } from "../../src/activation/index.js"
import { causalMask } from "../../src/attention/full.js"
import { linear } from "../../src/attention/projection.js"
import { fusedCausalSoftmax, fusedRowCosine, fusedSoftmaxMargin } from "../../src/backend/fused.js"
import { fusedKernelNames, type NativeBackend, nativeKernelNames } from "../../src/backend/native/index.js"
import { crossEntropy } from "../../src/model/loss.js"
import { distillationLoss } from "../../src/objective/distill-loss.js"
import { AdamW } from "../../src/optimizer/adamw.js"
import { norm } from "../../dsl/index.js"
import { normApply } from "../../src/norm/index.js"
import { peakMeter } from "../../src/backend/peak-memory.js"
import { Rng } from "../../src/random/rng.js"
import { compareBackends, expectClose, normal, runOn, withSpecials } from "./compare.js"
import { describeNative, nativeStatus } from "./native-suite.js"

const native = describeNative

/** Every native kernel against the stock cpu kernel on seeded random inputs. */
native("native kernels equal stock cpu kernels", () => {
  const rng = Rng.fromSeed(5)
  const t = (shape: number[], specials = false): tf.Tensor => {
    const n = shape.reduce((a, b) => a * b, 1)
    return tf.tensor(specials ? withSpecials(rng, n) : normal(rng, n), shape)
  }
  // Inputs are made once so both backends see the same values.
  const input = (shape: number[], specials = false): (() => tf.Tensor) => {
    const n = shape.reduce((a, b) => a * b, 1)
    const v = specials ? withSpecials(rng, n) : normal(rng, n)
    return () => tf.tensor(v, shape)
  }

  beforeAll(async () => {
    await tf.setBackend("native")
  })

  it("registers every stock cpu kernel and overrides the hot ones", () => {
    const stock = tf.getKernelsForBackend("cpu").map((k) => k.kernelName).sort()
    const mine = tf.getKernelsForBackend("native").map((k) => k.kernelName).sort()
    expect(mine).toEqual([...stock, ...fusedKernelNames()].sort())
    for (const name of nativeKernelNames()) expect(stock).toContain(name)
    expect(t([1]).size).toBe(1)
  })

  it("BatchMatMul: transposes, batch dims, broadcast batches, size-1 and empty dims, NaN/Inf", async () => {
    const cases: Array<[number[], number[], boolean, boolean]> = [
      [[5, 7], [7, 3], false, false],
      [[7, 5], [7, 3], true, false],
      // A^T with at least twice B's columns in rows: computed as (B^T·A)^T (native/matmul.cc).
      [[7, 12], [7, 3], true, false],
      [[40, 130], [40, 17], true, false],
      [[5, 7], [3, 7], false, true],
      [[7, 5], [3, 7], true, true],
      [[2, 3, 5, 7], [2, 3, 7, 4], false, false],
      [[6, 7, 5], [6, 4, 7], true, true],
      [[1, 5, 7], [4, 7, 3], false, false],
      [[4, 5, 7], [1, 7, 3], false, false],
      [[4, 7, 5], [7, 3], true, false],
      [[4, 5, 7], [3, 7], false, true],
      [[1, 1], [1, 1], false, false],
      [[0, 7], [7, 3], false, false],
      [[5, 0], [0, 3], false, false],
      [[3, 0, 4], [3, 4, 2], false, false],
      [[64, 33], [33, 65], false, false],
    ]
    for (const [as, bs, ta, tb] of cases) {
      const a = input(as, true)
      const b = input(bs)
      await compareBackends(() => tf.matMul(a(), b(), ta, tb), 1e-5, 1e-5, `matMul ${as} ${bs} ${ta} ${tb}`)
    }
  })

  it("_FusedMatMul: bias and activations", async () => {
    for (const activation of ["linear", "relu", "relu6", "sigmoid", "elu", "leakyrelu"] as const) {
      const a = input([2, 6, 9])
      const b = input([9, 5])
      const bias = input([5])
      await compareBackends(
        () => tf.fused.matMul({ a: a(), b: b(), bias: bias(), activation, leakyreluAlpha: 0.1 }),
        1e-5,
        1e-5,
        `fused ${activation}`,
      )
    }
    const a = input([4, 3])
    const b = input([4, 5])
    await compareBackends(() => tf.fused.matMul({ a: a(), b: b(), transposeA: true, activation: "relu" }), 1e-5, 1e-5)
  })

  it("binary ops broadcast on each side, with size-1 and empty dims and NaN/Inf", async () => {
    const shapes: Array<[number[], number[]]> = [
      [[2, 3, 4], [2, 3, 4]],
      [[2, 3, 4], [4]],
      [[4], [2, 3, 4]],
      [[2, 1, 4], [1, 3, 1]],
      [[3, 1], [1, 5]],
      [[], [3]],
      [[2, 3], []],
      [[2, 3], [2, 1]],
      [[1], [1]],
      [[0, 3], [3]],
      [[2, 0], [1, 0]],
      [[40, 33, 30], [33, 1]],
    ]
    const ops: Array<[string, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor, number]> = [
      ["add", tf.add, 0],
      ["sub", tf.sub, 0],
      ["mul", tf.mul, 0],
      ["div", tf.div, 0],
      ["maximum", tf.maximum, 0],
      ["minimum", tf.minimum, 0],
      ["squaredDifference", tf.squaredDifference, 1e-6],
      ["pow", tf.pow, 1e-6],
      ["prelu", (a, b) => tf.prelu(a, b), 0],
    ]
    for (const [name, op, rtol] of ops)
      for (const [as, bs] of shapes) {
        const a = input(as, true)
        const b = input(bs, true)
        await compareBackends(() => op(a(), b()), rtol, 0, `${name} ${as} ${bs}`)
      }
  })

  it("int32 add/sub/mul/max/min broadcast and wrap like Int32Array stores", async () => {
    const ints = (n: number) => Array.from({ length: n }, () => rng.nextInt(2001) - 1000)
    const a = ints(24)
    const b = ints(4)
    const big = [2147483647, -2147483648, 65536, 3]
    const ops: Array<[string, (x: tf.Tensor, y: tf.Tensor) => tf.Tensor]> = [
      ["add", tf.add],
      ["sub", tf.sub],
      ["mul", tf.mul],
      ["maximum", tf.maximum],
      ["minimum", tf.minimum],
    ]
    for (const [name, op] of ops) {
      await compareBackends(() => op(tf.tensor3d(a, [2, 3, 4], "int32"), tf.tensor1d(b, "int32")), 0, 0, `${name} int32`)
      await compareBackends(() => op(tf.tensor2d(a.slice(0, 3), [3, 1], "int32"), tf.tensor2d(b, [1, 4], "int32")), 0, 0, `${name} outer`)
      await compareBackends(() => op(tf.tensor1d(big, "int32"), tf.tensor1d([1, -1, 65536, 0], "int32")), 0, 0, `${name} wrap`)
    }
  })

  it("comparisons, logical ops, Select and PadV2", async () => {
    const x = input([3, 4, 5], true)
    const y = input([4, 1], true)
    const cmps: Array<[string, (p: tf.Tensor, q: tf.Tensor) => tf.Tensor]> = [
      ["equal", tf.equal],
      ["notEqual", tf.notEqual],
      ["less", tf.less],
      ["lessEqual", tf.lessEqual],
      ["greater", tf.greater],
      ["greaterEqual", tf.greaterEqual],
    ]
    for (const [name, op] of cmps) {
      await compareBackends(() => op(x(), y()), 0, 0, `${name} float32`)
      await compareBackends(() => op(x(), x()), 0, 0, `${name} self`)
      await compareBackends(() => op(tf.cast(tf.mul(x(), 3), "int32"), tf.cast(tf.mul(y(), 3), "int32")), 0, 0, `${name} int32`)
    }
    await compareBackends(() => tf.logicalAnd(tf.greater(x(), 0), tf.less(y(), 0.5)), 0, 0, "and")
    await compareBackends(() => tf.logicalOr(tf.greater(x(), 0), tf.less(y(), 0.5)), 0, 0, "or")
    const z = input([3, 4, 5])
    await compareBackends(() => tf.where(tf.greater(z(), 0), x(), z()), 0, 0, "select")
    await compareBackends(() => tf.where(tf.less(y(), 0).reshape([4, 1]), x(), z()), 0, 0, "select broadcast")
    await compareBackends(() => tf.linalg.bandPart(tf.ones([6, 6]), -1, 0), 0, 0, "bandPart")
    await compareBackends(() => tf.pad(x(), [[1, 0], [0, 2], [3, 1]], 0.5), 0, 0, "pad")
    await compareBackends(() => tf.pad(tf.zeros([0, 2]), [[1, 1], [0, 1]], 7), 0, 0, "pad empty")
    await compareBackends(
      () => tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.slice(t, [1, 0, 2], [2, 3, 2]), 3)))(x()),
      0,
      0,
      "slice grad",
    )
  })

  it("unary ops, including NaN, ±Inf, ±0, large and tiny values", async () => {
    const v = new Float32Array([...withSpecials(rng, 3000), 100, -100, 88, 89, -87, -104, 1e-30, -1e-30, 1e-3, -1e-3, 0.6, -0.6, 9.5])
    const x = () => tf.tensor(v)
    const ops: Array<[string, () => tf.Tensor, number, number]> = [
      ["exp", () => tf.exp(x()), 1e-6, 1e-37],
      ["log", () => tf.log(x()), 1e-6, 0],
      ["sigmoid", () => tf.sigmoid(x()), 1e-6, 1e-37],
      ["tanh", () => tf.tanh(x()), 1e-6, 1e-7],
      // The stock erf is a polynomial approximation with absolute error up to 1.5e-7.
      ["erf", () => tf.erf(x()), 0, 3e-7],
      ["relu", () => tf.relu(x()), 0, 0],
      ["relu6", () => tf.relu6(x()), 0, 0],
      ["sqrt", () => tf.sqrt(x()), 1e-7, 0],
      ["rsqrt", () => tf.rsqrt(x()), 1e-6, 0],
      ["square", () => tf.square(x()), 0, 0],
      ["neg", () => tf.neg(x()), 0, 0],
      ["abs", () => tf.abs(x()), 0, 0],
      ["reciprocal", () => tf.reciprocal(x()), 0, 0],
      ["step", () => tf.step(x(), 0.25), 0, 0],
      ["elu", () => tf.elu(x()), 1e-6, 1e-7],
      ["leakyRelu", () => tf.leakyRelu(x(), 0.3), 3e-7, 0],
      ["log1p", () => tf.log1p(x()), 3e-7, 0],
      ["expm1", () => tf.expm1(x()), 3e-7, 0],
    ]
    for (const [name, f, rtol, atol] of ops) await compareBackends(f, rtol, atol, name)
    await compareBackends(() => tf.exp(tf.zeros([0, 3])), 0, 0, "empty")
  })

  it("Sum/Mean/Max/Min/Prod over contiguous and scattered axes, keepDims, empty dims", async () => {
    const axesCases: Array<[number[], number | number[] | undefined]> = [
      [[3, 4, 5], undefined],
      [[3, 4, 5], 0],
      [[3, 4, 5], 1],
      [[3, 4, 5], 2],
      [[3, 4, 5], [0, 1]],
      [[3, 4, 5], [0, 2]],
      [[3, 4, 5], [1, 2]],
      [[2, 1, 3, 4], [1, 3]],
      [[200, 300], 0],
      [[200, 300], 1],
      [[70000], 0],
      [[2, 0, 3], 1],
      [[2, 0, 3], 0],
      [[5], 0],
    ]
    for (const [shape, axis] of axesCases) {
      const x = input(shape, true)
      const y = input(shape)
      for (const keepDims of [false, true]) {
        await compareBackends(() => tf.sum(x(), axis, keepDims), 1e-6, 1e-6, `sum ${shape} ${axis}`)
        await compareBackends(() => tf.mean(y(), axis, keepDims), 1e-6, 1e-6, `mean ${shape} ${axis}`)
        await compareBackends(() => tf.prod(y(), axis, keepDims), 1e-6, 1e-30, `prod ${shape} ${axis}`)
        if (shape.every((d) => d > 0)) {
          await compareBackends(() => tf.max(x(), axis, keepDims), 0, 0, `max ${shape} ${axis}`)
          await compareBackends(() => tf.min(x(), axis, keepDims), 0, 0, `min ${shape} ${axis}`)
        }
      }
    }
  })

  it("Sum and Mean down the rows of a tall matrix (a bias gradient): stock values, and the same bits on any thread count", async () => {
    // Its own generator, so the later tests' inputs stay as they were.
    const own = Rng.fromSeed(37)
    const values = normal(own, 1000 * 300)
    const x = () => tf.tensor2d(values, [1000, 300])
    await compareBackends(() => [tf.sum(x(), 0), tf.mean(x(), 0, true)], 1e-6, 1e-6, "column sums")
    const { addon } = tf.findBackend("native") as NativeBackend
    const threads = addon.info().threads
    const sumsOn = async (n: number) => {
      addon.setThreads(n)
      return runOn("native", () => tf.sum(x(), 0))
    }
    try {
      expectClose(await sumsOn(1), await sumsOn(2), 0, 0, "one thread against two")
    } finally {
      addon.setThreads(threads)
    }
  })

  it("Softmax over the last axis, with -Inf, NaN and all -Inf rows", async () => {
    for (const shape of [[3, 5], [2, 3, 7], [4, 1], [8, 4096], [0, 4]]) {
      const x = input(shape)
      await compareBackends(() => tf.softmax(x()), 1e-6, 1e-9, `softmax ${shape}`)
    }
    const v = new Float32Array([1, 2, -Infinity, 3, -Infinity, -Infinity, -Infinity, -Infinity, 1, NaN, 2, 3, 1e30, -1e30, 0, 5])
    await compareBackends(() => tf.softmax(tf.tensor(v, [4, 4])), 1e-6, 1e-9, "softmax specials")
  })

  it("causal softmax equals softmax of the masked scores, forward and gradient, with a score bias and more keys than queries", async () => {
    // Its own generator, so the later tests' inputs stay as they were.
    const own = Rng.fromSeed(29)
    const values = (shape: number[]): (() => tf.Tensor) => {
      const v = normal(own, shape.reduce((a, b) => a * b, 1))
      return () => tf.tensor(v, shape)
    }
    const bias = values([3, 5, 9])
    for (const [tq, tk, biased] of [[7, 7, false], [5, 9, false], [5, 9, true], [1, 4, false]] as const) {
      const x = values([2, 3, tq, tk])
      const withBias = (s: tf.Tensor) => (biased ? tf.add(s, bias()) : s)
      const fused = (s: tf.Tensor) => fusedCausalSoftmax(withBias(s)) ?? tf.softmax(withBias(tf.add(s, causalMask(tq, tk))))
      const composed = (s: tf.Tensor) => tf.softmax(withBias(tf.add(s, causalMask(tq, tk))))
      const grad = (f: (s: tf.Tensor) => tf.Tensor) => () => tf.grad((s: tf.Tensor) => tf.sum(tf.mul(f(s), tf.sin(s))))(x())
      const label = `[${tq}, ${tk}]${biased ? " biased" : ""}`
      await compareBackends(() => fused(x()), 1e-6, 1e-9, `${label} forward`)
      await compareBackends(grad(fused), 1e-5, 1e-7, `${label} gradient`)
      // Against the composed ops on the native backend itself: the same float32 operations.
      expectClose(await runOn("native", () => fused(x())), await runOn("native", () => composed(x())), 2e-7, 1e-44, `${label} forward, native`)
      expectClose(await runOn("native", grad(fused)), await runOn("native", grad(composed)), 1e-6, 1e-9, `${label} gradient, native`)
    }
    await tf.setBackend("native")
    // The native run must have taken the fused kernels, or the comparison says nothing.
    const x = values([2, 3, 5, 9])
    const { kernelNames } = await tf.profile(() => tf.dispose(tf.tidy(() => tf.grad((s: tf.Tensor) => tf.sum(tf.mul(fusedCausalSoftmax(s)!, s)))(x()))))
    expect(kernelNames).toEqual(expect.arrayContaining(["CausalSoftmax", "CausalSoftmaxGrad"]))
    expect(kernelNames).not.toContain("Softmax")
  })

  it("dense layer with the bias and ReLU in the matmul's epilogue equals matMul, add and relu, forward and gradients", async () => {
    // Its own generator, so the later tests' inputs stay as they were.
    const own = Rng.fromSeed(31)
    const values = (shape: number[]): (() => tf.Tensor) => {
      const v = normal(own, shape.reduce((a, b) => a * b, 1))
      return () => tf.tensor(v, shape)
    }
    const [x, w, b] = [values([37, 24]), values([24, 70]), values([70])]
    for (const [bias, relu] of [[true, true], [false, true], [true, false]] as const) {
      const layer = (xs: tf.Tensor, ws: tf.Tensor, bs?: tf.Tensor) => linear((n) => (n === "w" ? ws : bs!), xs as tf.Tensor2D, "w", "b", bias, relu)
      const loss = (xs: tf.Tensor, ws: tf.Tensor, bs?: tf.Tensor) => tf.sum(tf.mul(layer(xs, ws, bs), tf.sin(xs).sum(1, true)))
      const grads = () => tf.grads(loss as (...ts: tf.Tensor[]) => tf.Tensor)(bias ? [x(), w(), b()] : [x(), w()])
      const label = `${bias ? "bias" : "no bias"}${relu ? ", relu" : ""}`
      await compareBackends(() => layer(x(), w(), bias ? b() : undefined), 1e-5, 1e-6, `${label} forward`)
      await compareBackends(grads, 1e-4, 1e-5, `${label} gradients`)
    }
    await tf.setBackend("native")
    // The native run must have taken the fused kernels, or the comparison says nothing.
    const { kernelNames } = await tf.profile(() =>
      tf.dispose(tf.tidy(() => tf.grads((xs: tf.Tensor, ws: tf.Tensor, bs: tf.Tensor) => tf.sum(linear((n) => (n === "w" ? ws : bs), xs as tf.Tensor2D, "w", "b", true, true)))([x(), w(), b()]))),
    )
    expect(kernelNames).toEqual(expect.arrayContaining(["_FusedMatMul", "ReluBiasGrad"]))
    for (const composed of ["Relu", "Step", "Add"]) expect(kernelNames).not.toContain(composed)
  })

  it("Transpose: permutations, size-1 and empty dims, float32/int32/bool", async () => {
    const perms: Array<[number[], number[]]> = [
      [[2, 3], [1, 0]],
      [[2, 3, 4, 5], [0, 2, 1, 3]],
      [[2, 3, 4, 5], [3, 2, 1, 0]],
      [[2, 3, 4, 5], [1, 3, 0, 2]],
      [[2, 1, 4, 1], [3, 2, 1, 0]],
      [[70, 45], [1, 0]],
      [[16, 33, 4, 9], [0, 2, 1, 3]],
      [[3, 0, 2], [2, 0, 1]],
      [[7], [0]],
    ]
    for (const [shape, perm] of perms) {
      const x = input(shape, true)
      await compareBackends(() => tf.transpose(x(), perm), 0, 0, `transpose ${shape} ${perm}`)
      await compareBackends(() => tf.transpose(tf.cast(tf.mul(x(), 10), "int32"), perm), 0, 0, `int32 ${shape}`)
      await compareBackends(() => tf.transpose(tf.greater(x(), 0), perm), 0, 0, `bool ${shape}`)
    }
  })

  it("Slice and SplitV: boxes on every axis, size -1, size-1 and empty dims, specials; split and concat gradients", async () => {
    const x = input([3, 4, 5, 6], true)
    const boxes: Array<[number[], number[]]> = [
      [[0, 0, 0, 0], [3, 4, 5, 6]],
      [[1, 0, 0, 0], [2, 4, 5, 6]],
      [[0, 1, 2, 0], [3, 2, 3, 6]],
      [[0, 0, 0, 3], [3, 4, 5, 3]],
      [[2, 3, 4, 5], [1, 1, 1, 1]],
      [[1, 2, 0, 1], [-1, -1, 2, -1]],
      [[0, 0, 2, 0], [3, 4, 0, 6]],
    ]
    for (const [begin, size] of boxes) await compareBackends(() => tf.slice(x(), begin, size), 0, 0, `slice ${begin} ${size}`)
    await compareBackends(() => tf.slice(tf.tensor([7.5]), [0], [1]), 0, 0, "slice rank 1")
    await compareBackends(() => tf.slice(tf.range(0, 24, 1, "int32").reshape([4, 6]), [1, 2], [2, 3]), 0, 0, "int32 slice")
    // Ids whose bits are float NaNs (signalling and quiet), infinities and -0 keep their bits.
    const ids = () => tf.tensor2d([0x7f800001, 0x7fc00001, -1, 0x7f800000, 0x80000000 | 0, 0xff800000 | 0, 1, 2, 3, 4, 5, 6], [2, 6], "int32")
    await compareBackends(() => tf.slice(ids(), [0, 0], [2, 4]), 0, 0, "int32 slice of NaN bit patterns")
    await compareBackends(() => tf.split(ids(), [1, 5], 1), 0, 0, "int32 split")
    const backend = tf.findBackend("native") as NativeBackend
    const copies = vi.spyOn(backend.addon, "slice")
    try {
      await runOn("native", () => [tf.slice(ids(), [0, 1], [2, 5]), ...tf.split(ids(), 2, 1)])
      expect(copies).toHaveBeenCalledTimes(3)
    } finally {
      copies.mockRestore()
    }
    for (const axis of [0, 1, 3, -1]) await compareBackends(() => tf.split(x(), [1, -1], axis), 0, 0, `split axis ${axis}`)
    await compareBackends(() => tf.split(x(), 2, 1), 0, 0, "split in two")
    await compareBackends(() => tf.split(x(), [2, 0, 2], 1), 0, 0, "split with an empty piece")
    const y = input([3, 2, 5, 6])
    await compareBackends(
      () => tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(tf.concat([a, b], 1), tf.range(1, 7, 1).reshape([1, 6, 1, 1]))))([x(), y()]),
      0,
      0,
      "concat gradient",
    )
    await compareBackends(() => tf.grad((a: tf.Tensor) => tf.sum(tf.square(tf.split(a, [3, 3], 3)[1]!)))(x()), 0, 0, "split gradient")
  })

  it("Cumsum along every axis, exclusive and reversed, with specials; its gradient", async () => {
    const x = input([3, 4, 5], true)
    // Not axis −1: tfjs passes it through and the stock kernel mis-shapes its result.
    for (const axis of [0, 1, 2])
      for (const exclusive of [false, true])
        for (const reverse of [false, true]) await compareBackends(() => tf.cumsum(x(), axis, exclusive, reverse), 0, 0, `cumsum axis ${axis} exclusive ${exclusive} reverse ${reverse}`)
    await compareBackends(() => tf.cumsum(tf.tensor1d([0.1, 0.2, 0.3, 1e8, -1e8]), 0), 0, 0, "cumsum rounding order")
    // The last axis: tfjs 4.22's cumsum gradient is wrong for any other.
    await compareBackends(() => tf.grad((a: tf.Tensor) => tf.sum(tf.mul(tf.cumsum(a, 2, true), tf.range(0, 60).reshape([3, 4, 5]))))(x()), 0, 0, "cumsum gradient")
  })

  it("Tile and broadcastTo: every axis repeated or not, size-1 and empty dims, float32 specials and int32; the broadcast's gradient", async () => {
    const x = input([2, 1, 3], true)
    for (const reps of [[1, 1, 1], [3, 1, 1], [1, 4, 1], [1, 1, 2], [2, 3, 2], [1, 0, 2]]) await compareBackends(() => tf.tile(x(), reps), 0, 0, `tile ${reps}`)
    await compareBackends(() => tf.tile(tf.tensor1d([1.5, -2]), [3]), 0, 0, "tile rank 1")
    await compareBackends(() => tf.tile(tf.range(0, 6, 1, "int32").reshape([2, 3]), [2, 2]), 0, 0, "int32 tile")
    await compareBackends(() => tf.broadcastTo(tf.expandDims(x(), 0), [4, 2, 5, 3]), 0, 0, "broadcastTo")
    await compareBackends(() => tf.grad((a: tf.Tensor) => tf.sum(tf.mul(tf.broadcastTo(a, [3, 2, 2, 3]), tf.range(0, 36).reshape([3, 2, 2, 3]))))(tf.tensor3d([1, 2, 3, 4, 5, 6], [2, 1, 3])), 0, 0, "broadcast gradient")
  })

  it("fused gelu, gelu-tanh and swish equal the composed ops, forward (NaN, ±Inf) and gradient", async () => {
    const x = input([40, 50], true)
    const plain = input([40, 50])
    for (const spec of [activation("gelu"), activation("gelu-tanh"), activation("swish"), activation("swish", { beta: 1.7 }), activation("geglu")]) {
      const f = (t: tf.Tensor) => activationApply(spec).apply(spec, t, spec.kind === "geglu" ? tf.add(t, 0.5) : undefined)
      await compareBackends(() => f(x()), 2e-6, 1e-6, `${spec.kind} forward`)
      await compareBackends(() => tf.grad((t: tf.Tensor) => tf.sum(tf.mul(f(t), tf.sin(t))))(plain()), 1e-5, 1e-6, `${spec.kind} gradient`)
    }
  })

  it("fused softmax margin is the top-1 minus top-2 probability of each row, bit for bit the native softmax's, 0 for a tie", () => {
    /** The two largest of each row's probabilities (equal ones both count), subtracted in float32. */
    const topTwo = (p: Float32Array, v: number): Float32Array =>
      Float32Array.from({ length: p.length / v }, (_, r) => {
        const row = [...p.subarray(r * v, (r + 1) * v)].sort((a, b) => b - a)
        return Math.fround(row[0]! - row[1]!)
      })
    /** The same in double, from the logits. */
    const naive = (x: Float32Array, v: number): number[] =>
      Array.from({ length: x.length / v }, (_, r) => {
        const row = [...x.subarray(r * v, (r + 1) * v)]
        const m = Math.max(...row)
        const e = row.map((y) => Math.exp(y - m)).sort((a, b) => b - a)
        const s = e.reduce((a, b) => a + b, 0)
        return (e[0]! - e[1]!) / s
      })
    // Its own draws: the suite's shared stream stays as the other cases were tuned on.
    const own = Rng.fromSeed(11)
    // 40 rows of 4262 pass the kernel's threshold for threads; a tie row, a peaked row.
    for (const [n, v] of [[5, 7], [40, 4262]] as const) {
      const x = Float32Array.from(normal(own, n * v), (y) => 3 * y)
      x.fill(0, 0, v)
      x[v + 2] = 40
      const logits = tf.tensor2d(x, [n, v])
      const margin = fusedSoftmaxMargin(logits)!.dataSync() as Float32Array
      expect(margin).toEqual(topTwo(tf.softmax(logits).dataSync() as Float32Array, v))
      expect(margin[0]).toBe(0)
      naive(x, v).forEach((m, r) => expect(margin[r]).toBeCloseTo(m, 6))
    }
  })

  it("fused row cosine equals the composed clamped cosine bit for bit: equal, opposite and zero rows", () => {
    const composed = (a: tf.Tensor2D, b: tf.Tensor2D) =>
      tf.clipByValue(tf.div(tf.sum(tf.mul(a, b), 1), tf.sqrt(tf.mul(tf.sum(tf.square(a), 1), tf.sum(tf.square(b), 1)))), -1, 1).dataSync()
    const naive = (a: Float32Array, b: Float32Array, d: number): number[] =>
      Array.from({ length: a.length / d }, (_, r) => {
        let [ab, aa, bb] = [0, 0, 0]
        for (let j = r * d; j < (r + 1) * d; j++) [ab, aa, bb] = [ab + a[j]! * b[j]!, aa + a[j]! * a[j]!, bb + b[j]! * b[j]!]
        return Math.min(1, Math.max(-1, ab / Math.sqrt(aa * bb)))
      })
    const own = Rng.fromSeed(12)
    // 1100 rows of 128 pass the kernel's threshold for threads.
    for (const [n, d] of [[6, 5], [1100, 128]] as const) {
      const a = Float32Array.from(normal(own, n * d))
      const b = Float32Array.from(normal(own, n * d), (y, j) => a[j]! + 0.3 * y)
      b.set(a.subarray(0, d), 0)
      b.set(a.subarray(d, 2 * d).map((y) => -y), d)
      a.fill(0, 2 * d, 3 * d)
      const [ta, tb] = [tf.tensor2d(a, [n, d]), tf.tensor2d(b, [n, d])]
      const cos = fusedRowCosine(ta, tb)!.dataSync() as Float32Array
      expect(cos).toEqual(composed(ta, tb))
      expect([cos[0], cos[1], cos[2]]).toEqual([1, -1, NaN])
      naive(a, b, d).forEach((c, r) => r !== 2 && expect(cos[r]).toBeCloseTo(c, 6))
    }
  })

  it("fused softmax cross-entropy equals the composed loss and its gradient, with padding and large logits", async () => {
    const [n, v] = [37, 301]
    const logits = input([n, v])
    const ids = Array.from({ length: n }, (_, i) => (i * 97) % v)
    const weights = Array.from({ length: n }, (_, i) => (i % 5 === 4 ? 0 : 1))
    for (const scale of [1, 30]) {
      const loss = (x: tf.Tensor) => crossEntropy(tf.mul(x, scale) as tf.Tensor2D, tf.tensor1d(ids, "int32"), tf.tensor1d(weights))
      await compareBackends(() => loss(logits()), 1e-6, 1e-6, `loss ×${scale}`)
      await compareBackends(() => tf.grad(loss)(logits()), 1e-5, 1e-7, `gradient ×${scale}`)
    }
  })

  it("the fused cross-entropy gradient overwrites the logits only when nothing else reads them", () => {
    const [n, d, v] = [64, 8, 512]
    // Its own draws: the tests after this one compare at tolerances tuned to the shared stream's inputs.
    const own = Rng.fromSeed(9)
    const t = (shape: number[]) => tf.tensor(normal(own, shape[0]! * shape[1]!), shape)
    const ids = tf.tensor1d(Array.from({ length: n }, (_, i) => (i * 97) % v), "int32")
    const weights = tf.ones([n]) as tf.Tensor1D
    const w = t([d, v])
    const loss = (logits: tf.Tensor) => crossEntropy(logits as tf.Tensor2D, ids, weights)
    // Logits a caller holds (here the variable of differentiation) keep their values.
    const held = tf.matMul(t([n, d]), w)
    const before = Array.from(held.dataSync())
    const g = tf.grad(loss)(held)
    expect(Array.from(held.dataSync())).toEqual(before)
    // Logits made inside the step: their gradient takes their buffer, one [N, V] at the peak.
    const x = t([n, d])
    const meter = peakMeter()!
    meter.start()
    const dx = tf.grad((a: tf.Tensor) => loss(tf.matMul(a, w)))(x)
    expect(meter.peakAbove()).toBeLessThan(1.5 * n * v * 4)
    tf.dispose([ids, weights, w, held, g, x, dx])
  })

  it("fused soft-target distillation loss equals the composed loss and its gradient: NaN/±Inf rows, padding, large logits", async () => {
    const [n, v] = [37, 301]
    const student = Array.from(normal(rng, n * v))
    const teacher = Array.from(normal(rng, n * v))
    // Row 0 holds a NaN, row 1 +Inf, row 3 −Inf (the student's); row 2 a −Inf teacher logit, row 4 +Inf.
    student[0 * v + 5] = NaN
    student[1 * v + 7] = Infinity
    teacher[2 * v + 9] = -Infinity
    student[3 * v + 11] = -Infinity
    teacher[4 * v + 13] = Infinity
    const ids = Array.from({ length: n }, (_, i) => (i * 97) % v)
    const padded = Array.from({ length: n }, (_, i) => (i % 5 === 4 || i < 5 ? 0 : 1))
    for (const divergence of ["forward-kl", "reverse-kl"] as const)
      for (const [temperature, alpha, scale] of [[1, 0.5, 1], [2, 0, 1], [4, 0.3, 30], [0.5, 1, 1]] as const) {
        const label = `${divergence} T=${temperature} α=${alpha} ×${scale}`
        const loss = (weights: number[]) => (x: tf.Tensor) =>
          distillationLoss(tf.mul(x, scale) as tf.Tensor2D, tf.tensor1d(ids, "int32"), tf.tensor1d(weights), {
            teacher: tf.mul(tf.tensor2d(teacher, [n, v]), scale) as tf.Tensor2D,
            temperature,
            alpha,
            divergence,
          })
        // Logits ×30 at T = 4 make the reverse KL's gradient a difference of terms near 25, where
        // float32 rounding (the composed ops' more than the kernel's) shows in the fourth digit.
        // Each row's value on its own (one non-finite row would make the mean NaN), then the
        // gradient of all rows at once: rows are independent, padded ones weigh 0.
        for (let i = 0; i < 6; i++) {
          const one = Array.from({ length: n }, (_, j) => (j === i ? 1 : 0))
          await compareBackends(() => loss(one)(tf.tensor2d(student, [n, v])), 1e-5, 1e-6, `${label} row ${i}`)
        }
        await compareBackends(() => loss(padded)(tf.tensor2d(student, [n, v])), 1e-5, 1e-6, `${label} loss`)
        await compareBackends(() => tf.grad(loss(padded.map((w, i) => (i < 5 ? 1 : w))))(tf.tensor2d(student, [n, v])), scale > 1 ? 1e-3 : 1e-4, 1e-7, `${label} gradient`)
      }
    await tf.setBackend("native")
    // The native run must have taken the fused kernels, or the comparison says nothing.
    const { kernelNames } = await tf.profile(() =>
      tf.dispose(tf.tidy(() => tf.grad((x: tf.Tensor) => distillationLoss(x as tf.Tensor2D, tf.tensor1d(ids, "int32"), tf.tensor1d(padded), { teacher: tf.tensor2d(teacher, [n, v]), temperature: 2, alpha: 0.5, divergence: "forward-kl" }))(tf.tensor2d(student, [n, v])))),
    )
    expect(kernelNames).toEqual(expect.arrayContaining(["SoftTargetDivergence", "SoftTargetGrad", "SoftmaxCrossEntropy"]))
    expect(kernelNames).not.toContain("Exp")
  })

  it("fused layer and RMS norm equal the composed ops, forward and gradients of x and gain", async () => {
    const x = input([3, 17, 40])
    const gain = input([40])
    const bias = input([40])
    for (const spec of [norm("layer"), norm("layer", { bias: false, eps: 1e-3 }), norm("rms")]) {
      const withBias = spec.kind === "layer" && spec.bias
      const f = (a: tf.Tensor, g: tf.Tensor, bb?: tf.Tensor) => normApply(spec).apply((n) => (n === "gain" ? g : bb!), tf.add(tf.mul(a, 3), 1) as tf.Tensor3D, spec)
      const loss = (a: tf.Tensor, g: tf.Tensor, bb?: tf.Tensor) => tf.sum(tf.mul(f(a, g, bb), tf.sin(a)))
      await compareBackends(() => f(x(), gain(), bias()), 1e-5, 1e-6, `${spec.kind} forward`)
      await compareBackends(() => tf.grads(loss as (...ts: tf.Tensor[]) => tf.Tensor)(withBias ? [x(), gain(), bias()] : [x(), gain()]), 1e-4, 1e-5, `${spec.kind} gradients`)
    }
    await tf.setBackend("native")
    // The bias is added and its gradient summed inside the norm's kernels.
    const { kernelNames } = await tf.profile(() => tf.dispose(tf.tidy(() => tf.grads((a: tf.Tensor, g: tf.Tensor, bb: tf.Tensor) => tf.mean(tf.mul(normApply(norm("layer")).apply((n) => (n === "gain" ? g : bb), a as tf.Tensor3D, norm("layer")), x())))([x(), gain(), bias()]))))
    expect(kernelNames).toEqual(expect.arrayContaining(["Normalize", "NormalizeGrad"]))
    for (const composed of ["Add", "Sum"]) expect(kernelNames).not.toContain(composed)
  })

  it("fused AdamW update equals the composed one bit for bit, with and without decay, NaN/Inf gradients", async () => {
    // "big" passes the kernel's parallel threshold; "b" is not decayed.
    const shapes: Record<string, number[]> = { w: [13, 7], b: [7], big: [300, 257] }
    const start = Object.fromEntries(Object.entries(shapes).map(([n, s]) => [n, input(s)]))
    const grads = [false, true, false].map((specials) => Object.fromEntries(Object.entries(shapes).map(([n, s]) => [n, input(s, specials && n === "w")])))
    const run = () => {
      const params = Object.fromEntries(Object.entries(start).map(([n, v]) => [n, tf.variable(v())]))
      const opt = new AdamW(params, { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, decay: (n) => n !== "b" })
      grads.forEach((g, k) => opt.update(Object.fromEntries(Object.entries(g).map(([n, f]) => [n, f()])), [1e-3, 3e-2, 2e-3][k]!))
      const state = opt.exportState()
      const out = Object.keys(shapes).flatMap((n) => [params[n]!.clone(), tf.tensor(state.moments[`m.${n}`]!.data), tf.tensor(state.moments[`v.${n}`]!.data)])
      opt.dispose()
      tf.dispose(Object.values(params))
      return out
    }
    await compareBackends(run, 0, 0, "AdamW")
    await tf.setBackend("native")
    // The native run must have taken the fused kernel, or the comparison says nothing.
    const { kernelNames } = await tf.profile(() => tf.dispose(tf.tidy(run)))
    expect(kernelNames).toContain("AdamWUpdate")
    expect(kernelNames).not.toContain("Sqrt")
  })

  it("GatherV2 on axes 0 and 1, int32 params, and the stock error for a bad index", async () => {
    const x = input([10, 4, 3])
    const idx = [[1, 2, 9], [3, 9, 0]]
    await compareBackends(() => tf.gather(x(), tf.tensor2d(idx, [2, 3], "int32")), 0, 0, "axis 0")
    await compareBackends(() => tf.gather(x(), tf.tensor1d([3, 0, 0, 2], "int32"), 1), 0, 0, "axis 1")
    await compareBackends(() => tf.gather(x(), tf.tensor1d([], "int32")), 0, 0, "no indices")
    await compareBackends(() => tf.gather(tf.range(0, 12, 1, "int32").reshape([4, 3]), tf.tensor1d([3, 1], "int32")), 0, 0, "int32")
    await tf.setBackend("native")
    expect(() => tf.gather(x(), tf.tensor1d([10], "int32"))).toThrow(/not in \[0, 9\]/)
  })

  it("UnsortedSegmentSum (scatter-add) drops out-of-range ids; OneHot; gather gradient", async () => {
    const x = input([7, 3])
    const ids = tf.tensor1d([0, 2, 2, -1, 5, 1, 0], "int32")
    const idsValues = ids.arraySync()
    await compareBackends(() => tf.unsortedSegmentSum(x(), tf.tensor1d(idsValues, "int32"), 4), 1e-6, 1e-6, "segments")
    await compareBackends(() => tf.oneHot(tf.tensor1d([0, 3, -1, 4, 2], "int32"), 4), 0, 0, "oneHot")
    await compareBackends(() => tf.oneHot(tf.tensor2d([[1, 0], [2, 2]], [2, 2], "int32"), 3, 5, -1), 0, 0, "oneHot 2d")
    const table = input([50, 8])
    const tokens = tf.tensor2d([[1, 4, 4], [49, 0, 1]], [2, 3], "int32").arraySync()
    await compareBackends(
      () => {
        const loss = (w: tf.Tensor) => tf.sum(tf.mul(tf.gather(w, tf.tensor2d(tokens, [2, 3], "int32")), tf.range(0, 8)))
        return tf.grad(loss)(table())
      },
      1e-6,
      1e-6,
      "gather grad",
    )
  })
})

native("native backend's peak memory meter", () => {
  it("counts each stored buffer once, at its byte size, and forgets disposed ones", async () => {
    await tf.setBackend("native")
    const meter = peakMeter()!
    const kept = tf.zeros([10, 10])
    meter.start()
    expect(meter.peakAbove()).toBe(0)
    tf.tidy(() => {
      const a = tf.ones([100, 25])
      // A reshape shares a's buffer: tf.memory() counts its bytes again, the meter does not.
      const before = tf.memory().numBytes
      const r = a.reshape([25, 100])
      expect(tf.memory().numBytes - before).toBe(10_000)
      expect(meter.peakAbove()).toBe(10_000)
      tf.add(r, r)
      expect(meter.peakAbove()).toBe(20_000)
    })
    tf.tidy(() => tf.ones([1000]))
    expect(meter.peakAbove()).toBe(20_000)
    meter.start()
    tf.tidy(() => tf.ones([1000]))
    expect(meter.peakAbove()).toBe(4_000)
    kept.dispose()
  })
})

describe("native kernel availability", () => {
  it("either loads the addon or says why", async () => {
    if (nativeStatus.available) expect(nativeStatus.detail).toMatch(/oneDNN/)
    else expect(nativeStatus.reason.length).toBeGreaterThan(0)
    const [r] = await runOn("cpu", () => tf.add(tf.scalar(1), tf.scalar(2)))
    expect(Array.from(r.values)).toEqual([3])
  })
})
