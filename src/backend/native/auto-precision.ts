import { Effect, FileSystem, Path } from "effect"
import { writeFileAtomic } from "../../io/atomic-write.js"
import type { NativeAddon } from "./addon.js"
import { PRECISION_CODE } from "./backend.js"

/**
 * TFJS_NATIVE_BF16=auto: each matrix product shape a run multiplies is timed once per machine
 * in both precisions, and runs in bf16 only where that was faster. bf16 is not always the
 * faster: on one Intel CPU with AVX-512 bf16 a training step ran slower in bf16 than in fp32,
 * and a CPU without bf16 hardware has no fast bf16 kernels at all. The timings are kept in a
 * cache file keyed by the CPU model, oneDNN's ISA, the thread count and the shape, so later
 * runs on the machine measure only shapes they have not seen.
 */
export interface MatmulShape {
  readonly m: number
  readonly k: number
  readonly n: number
  readonly transposeA: boolean
  readonly transposeB: boolean
}

/** The key of a product of an [m, k] and a [k, n] operand (as stored, one transposed or not). */
export const shapeKey = (s: MatmulShape): string => `${s.m}x${s.k}x${s.n}${s.transposeA ? "t" : "n"}${s.transposeB ? "t" : "n"}`

/** Seconds per product, median of interleaved repeats; bf16 undefined when oneDNN refused the shape in bf16. */
export interface Timing {
  readonly fp32: number
  readonly bf16: number | undefined
}

/** bf16 must beat fp32 by this fraction: a smaller gap is within the timing noise of a shared machine. */
export const MARGIN = 0.05

export interface PrecisionChoice {
  /** Shape keys that run in bf16; every other shape runs in fp32. */
  readonly bf16: ReadonlySet<string>
  /** What was chosen and why, for the run's summary. */
  readonly why: string
}

const ratio = (x: number): string => `${x.toFixed(2)}×`

/** The choice, from the machine's bf16 support and each shape's timings (a pure function). */
export const choosePrecision = (shapes: ReadonlyArray<MatmulShape>, bf16Native: boolean, isa: string, timings: ReadonlyMap<string, Timing>): PrecisionChoice => {
  const auto = "TFJS_NATIVE_BF16=auto"
  if (!bf16Native) return { bf16: new Set(), why: `${auto}: fp32, this CPU (${isa}) has no bf16 hardware (avx512_bf16/AMX), so oneDNN has no fast bf16 kernels here` }
  const keys = [...new Set(shapes.map(shapeKey))]
  const faster = keys.filter((k) => {
    const t = timings.get(k)
    return t?.bf16 !== undefined && t.bf16 < (1 - MARGIN) * t.fp32
  })
  const total = (ks: ReadonlyArray<string>, p: "fp32" | "bf16") => ks.reduce((s, k) => s + (timings.get(k)?.[p] ?? 0), 0)
  const all = `${keys.length} matmul shape${keys.length === 1 ? "" : "s"}`
  if (faster.length === 0) {
    const measured = keys.filter((k) => timings.get(k)?.bf16 !== undefined)
    const speed = measured.length === 0 ? "oneDNN ran none of them in bf16" : `bf16 took ${ratio(total(measured, "bf16") / total(measured, "fp32"))} fp32's time`
    return { bf16: new Set(), why: `${auto}: fp32, bf16 was not ${MARGIN * 100} % faster on any of the ${all} (${speed})` }
  }
  return {
    bf16: new Set(faster),
    why: `${auto}: bf16 for ${faster.length} of the ${all} (${ratio(total(faster, "fp32") / total(faster, "bf16"))} faster on them), fp32 for the rest`,
  }
}

/** Times one product in both precisions on seeded operands, interleaved, median of `repeats`. */
export const timeMatmul = (addon: NativeAddon, s: MatmulShape, repeats = 5): Timing => {
  let seed = 1
  const operand = (n: number) => Float32Array.from({ length: n }, () => ((seed = (seed * 16807) % 2147483647) / 2147483647) - 0.5)
  const a = operand(s.m * s.k)
  const b = operand(s.k * s.n)
  const out = new Float32Array(s.m * s.n)
  const run = (precision: number): number | undefined => {
    const start = performance.now()
    const err = addon.matmul(a, b, out, [1, 1, s.m, s.n, s.k], s.transposeA, s.transposeB, null, 0, 0, precision)
    return err === "" ? (performance.now() - start) / 1000 : undefined
  }
  // The first call of each builds oneDNN's primitive; it is not timed.
  run(PRECISION_CODE.fp32)
  const bf16Runs = run(PRECISION_CODE.bf16) !== undefined
  const fp32: number[] = []
  const bf16: number[] = []
  for (let r = 0; r < repeats; r++) {
    fp32.push(run(PRECISION_CODE.fp32)!)
    if (bf16Runs) bf16.push(run(PRECISION_CODE.bf16)!)
  }
  const median = (xs: number[]) => xs.sort((x, y) => x - y)[Math.floor(xs.length / 2)]!
  return { fp32: median(fp32), bf16: bf16Runs ? median(bf16) : undefined }
}

export interface Machine {
  /** CPU model, oneDNN ISA and kernel threads: what a timing depends on besides the shape. */
  readonly cpu: string
  readonly isa: string
  readonly threads: number
  readonly bf16Native: boolean
}

interface CacheFile {
  readonly format: 1
  readonly timings: Readonly<Record<string, Timing>>
}

const entryKey = (machine: Machine, key: string): string => `${machine.cpu} | ${machine.isa} | ${machine.threads} threads | ${key}`

/**
 * The choice for `shapes` on `machine`: timings from the cache file where it has them, the
 * others measured with `measure` and added to it (written atomically). An unreadable cache is
 * measured again and replaced; one that cannot be written only costs the next run the measurement.
 */
export const autoPrecision = (
  shapes: ReadonlyArray<MatmulShape>,
  machine: Machine,
  cacheFile: string,
  measure: (s: MatmulShape) => Timing,
): Effect.Effect<PrecisionChoice, never, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function* () {
    if (!machine.bf16Native) return choosePrecision(shapes, false, machine.isa, new Map())
    const fs = yield* FileSystem.FileSystem
    const cached = yield* fs.readFileString(cacheFile).pipe(
      Effect.flatMap((text) => Effect.try({ try: () => JSON.parse(text) as Partial<CacheFile> | null, catch: () => "not JSON" })),
      Effect.map((c) => (c?.format === 1 && typeof c.timings === "object" && c.timings !== null ? c.timings : {})),
      Effect.orElseSucceed((): Readonly<Record<string, Timing>> => ({})),
    )
    const timings = new Map<string, Timing>()
    const added: Record<string, Timing> = {}
    for (const s of shapes) {
      const key = shapeKey(s)
      if (timings.has(key)) continue
      const hit = cached[entryKey(machine, key)]
      const t = typeof hit?.fp32 === "number" ? hit : (added[entryKey(machine, key)] = measure(s))
      timings.set(key, t)
    }
    if (Object.keys(added).length > 0) {
      const file: CacheFile = { format: 1, timings: { ...cached, ...added } }
      yield* writeFileAtomic(cacheFile, JSON.stringify(file, null, 1) + "\n", { makeDirectory: true }).pipe(Effect.ignore)
    }
    return choosePrecision(shapes, true, machine.isa, timings)
  })
