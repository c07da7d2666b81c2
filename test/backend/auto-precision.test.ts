import * as tf from "@tensorflow/tfjs"
import { NodeServices } from "@effect/platform-node"
import { Effect, Exit, type FileSystem, Layer, type Path } from "effect"
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach, describe, expect, it, vi } from "vitest"
import { autoPrecision, choosePrecision, type MatmulShape, shapeKey, type Timing } from "../../src/backend/native/auto-precision.js"
import type { NativeBackend } from "../../src/backend/native/index.js"
import { ProgressSink } from "../../src/io/progress.js"
import { trainingShapes } from "../../src/train/precision.js"
import { trainRun } from "../../src/train/run.js"
import { describeNative } from "./native-suite.js"
import { syntheticData, tinyRun } from "../train/fixtures.js"

/**
 * TFJS_NATIVE_BF16=auto: bf16 for the matmul shapes measured faster, fp32 for the rest and on
 * CPUs without bf16 hardware; timings cached per machine and shape. The decisions are checked
 * on injected timings, so nothing here depends on the machine's speed.
 */
const shape = (m: number, k: number, n: number, transposeA = false, transposeB = false): MatmulShape => ({ m, k, n, transposeA, transposeB })
const a = shape(512, 64, 256)
const b = shape(512, 256, 64)
const c = shape(64, 512, 256, true)
const timings = (entries: Array<[MatmulShape, Timing]>) => new Map(entries.map(([s, t]) => [shapeKey(s), t]))

describe("choosing the matmul precision", () => {
  it("keeps fp32 on a CPU without bf16 hardware, and says why", () => {
    const choice = choosePrecision([a, b], false, "avx2", timings([[a, { fp32: 2, bf16: 1 }]]))
    expect(choice.bf16.size).toBe(0)
    expect(choice.why).toBe("TFJS_NATIVE_BF16=auto: fp32, this CPU (avx2) has no bf16 hardware (avx512_bf16/AMX), so oneDNN has no fast bf16 kernels here")
  })

  it("takes bf16 only for the shapes where it was more than 5 % faster", () => {
    const choice = choosePrecision([a, b, c, a], true, "avx512_core_bf16", timings([[a, { fp32: 2, bf16: 1 }], [b, { fp32: 1, bf16: 0.97 }], [c, { fp32: 1, bf16: undefined }]]))
    expect([...choice.bf16]).toEqual([shapeKey(a)])
    expect(choice.why).toBe("TFJS_NATIVE_BF16=auto: bf16 for 1 of the 3 matmul shapes (2.00× faster on them), fp32 for the rest")
  })

  it("keeps fp32 where bf16 is slower everywhere or refused, with the figure", () => {
    const slower = choosePrecision([a, b], true, "avx512_core_bf16", timings([[a, { fp32: 1, bf16: 1.5 }], [b, { fp32: 1, bf16: 1.5 }]]))
    expect(slower.bf16.size).toBe(0)
    expect(slower.why).toBe("TFJS_NATIVE_BF16=auto: fp32, bf16 was not 5 % faster on any of the 2 matmul shapes (bf16 took 1.50× fp32's time)")
    expect(choosePrecision([c], true, "avx512_core_bf16", timings([[c, { fp32: 1, bf16: undefined }]])).why).toMatch(/oneDNN ran none of them in bf16/)
  })

  it("lists a training step's products: each weight's and its two gradients', the tied head's", () => {
    const spec = tinyRun({ steps: 1 }).model
    const shapes = trainingShapes(spec, 4).map(shapeKey)
    const m = 4 * spec.context
    // Forward x·W, dX = dY·Wᵀ, dW = Xᵀ·dY for the FFN's input projection [16, 64].
    for (const key of [`${m}x16x64nn`, `${m}x64x16nt`, `16x${m}x64tn`]) expect(shapes).toContain(key)
    // The tied head h·Eᵀ, dH = dY·E, dE = dYᵀ·h.
    for (const key of [`${m}x16x17nt`, `${m}x17x16nn`, `17x${m}x16tn`]) expect(shapes).toContain(key)
  })
})

const run = <A, E>(e: Effect.Effect<A, E, FileSystem.FileSystem | Path.Path>) => Effect.runPromise(e.pipe(Effect.provide(NodeServices.layer)))

describe("the timing cache", () => {
  const machine = { cpu: "Test CPU", isa: "avx512_core_bf16", threads: 2, bf16Native: true }
  const counting = () => {
    const measured: string[] = []
    return { measured, measure: (s: MatmulShape): Timing => (measured.push(shapeKey(s)), shapeKey(s) === shapeKey(a) ? { fp32: 2, bf16: 1 } : { fp32: 1, bf16: 2 }) }
  }

  it("measures each shape once per machine: a second call reads the cache, a changed key measures again", async () => {
    const file = join(mkdtempSync(join(tmpdir(), "precision-")), "cache", "matmul-precision.json")
    const first = counting()
    const chosen = await run(autoPrecision([a, b, a], machine, file, first.measure))
    expect(first.measured).toEqual([shapeKey(a), shapeKey(b)])
    expect([...chosen.bf16]).toEqual([shapeKey(a)])
    const again = counting()
    const cachedChoice = await run(autoPrecision([a, b], machine, file, again.measure))
    expect(again.measured).toEqual([])
    expect(cachedChoice).toEqual(chosen)
    const other = counting()
    await run(autoPrecision([a, b, c], { ...machine, threads: 4 }, file, other.measure))
    expect(other.measured).toEqual([shapeKey(a), shapeKey(b), shapeKey(c)])
    const more = counting()
    await run(autoPrecision([a, c], machine, file, more.measure))
    expect(more.measured).toEqual([shapeKey(c)])
    expect(Object.keys(JSON.parse(readFileSync(file, "utf8")).timings)).toHaveLength(6)
  })

  it("measures again over a cache that is not JSON, and replaces it", async () => {
    const file = join(mkdtempSync(join(tmpdir(), "precision-")), "matmul-precision.json")
    writeFileSync(file, "{torn")
    const m = counting()
    await run(autoPrecision([a], machine, file, m.measure))
    expect(m.measured).toEqual([shapeKey(a)])
    expect(JSON.parse(readFileSync(file, "utf8")).format).toBe(1)
  })

  it("measures nothing on a CPU without bf16 hardware", async () => {
    const file = join(mkdtempSync(join(tmpdir(), "precision-")), "matmul-precision.json")
    const m = counting()
    const choice = await run(autoPrecision([a], { ...machine, isa: "avx2", bf16Native: false }, file, m.measure))
    expect(m.measured).toEqual([])
    expect(choice.why).toMatch(/this CPU \(avx2\) has no bf16 hardware/)
  })
})

const quiet = Layer.succeed(ProgressSink, { isTTY: false, columns: () => 80, write: () => {}, now: () => performance.now() })

describeNative("TFJS_NATIVE_BF16=auto on the native backend", () => {
  afterEach(async () => {
    delete process.env["TFJS_NATIVE_BF16"]
    delete process.env["XDG_CACHE_HOME"]
    vi.restoreAllMocks()
    await tf.setBackend("cpu")
  })

  it("runs the products of the chosen shapes in bf16 and the others in fp32", async () => {
    await tf.setBackend("native")
    const backend = tf.backend() as NativeBackend
    const matmul = vi.spyOn(backend.addon, "matmul")
    const x = tf.ones([8, 4])
    const w = tf.ones([4, 3])
    backend.bf16Shapes = new Set([shapeKey(shape(8, 4, 3))])
    try {
      tf.dispose([tf.matMul(x, w), tf.matMul(w, x, true, true)])
    } finally {
      backend.bf16Shapes = new Set()
    }
    // The bf16 product may be refused on a CPU without bf16 kernels and rerun in fp32.
    expect(matmul.mock.calls[0]![9]).toBe(1)
    expect(matmul.mock.calls.at(-1)![9]).toBe(0)
    tf.dispose([x, w])
  })

  it("a run records the choice and its reason in the summary's backendDetail", async () => {
    await tf.setBackend("native")
    process.env["TFJS_NATIVE_BF16"] = "auto"
    process.env["XDG_CACHE_HOME"] = mkdtempSync(join(tmpdir(), "precision-"))
    const out = mkdtempSync(join(tmpdir(), "precision-run-"))
    const exit = await Effect.runPromiseExit(
      Effect.scoped(trainRun(tinyRun({ steps: 1 }), syntheticData(), { out, fresh: false, backend: { name: "native", detail: "test" }, resumeCommand: "" })).pipe(
        Effect.provide(Layer.merge(NodeServices.layer, quiet)),
      ),
    )
    expect(Exit.isSuccess(exit), String(Exit.isFailure(exit) && exit.cause)).toBe(true)
    const detail = (JSON.parse(readFileSync(join(out, "summary.json"), "utf8")) as { backendDetail: string }).backendDetail
    const info = (tf.backend() as NativeBackend).addon.info()
    expect(detail).toMatch(info.bf16Native ? /^test; TFJS_NATIVE_BF16=auto: (fp32|bf16) / : /^test; TFJS_NATIVE_BF16=auto: fp32, this CPU \(.*\) has no bf16 hardware/)
  })
})
