import * as tf from "@tensorflow/tfjs"
import { Console, Effect, type FileSystem, type Path } from "effect"
import { homedir, cpus } from "node:os"
import { join } from "node:path"
import { type DecoderSpec } from "../../dsl/nodes.js"
import { isMatmul, paramTable } from "../../dsl/params.js"
import { autoPrecision, type MatmulShape, timeMatmul } from "../backend/native/auto-precision.js"
import { NativeBackend } from "../backend/native/backend.js"

/**
 * TFJS_NATIVE_BF16=auto for one run: the matrix products a training step of this model makes
 * at this batch, each timed in both precisions once per machine (src/backend/native/auto-precision.ts),
 * and the native backend told which run in bf16. Says what it chose and why; undefined when
 * auto is not asked for or the backend is not the native one.
 */

/** The products of x [m, k] · W [k, n] (W transposed when `tb`) and its two gradients, as tfjs's MatMul gradient computes them. */
const withGradients = (m: number, k: number, n: number, tb: boolean): MatmulShape[] => [
  { m, k, n, transposeA: false, transposeB: tb },
  tb ? { m, k: n, n: k, transposeA: false, transposeB: false } : { m, k: n, n: k, transposeA: false, transposeB: true },
  tb ? { m: n, k: m, n: k, transposeA: true, transposeB: false } : { m: k, k: m, n, transposeA: true, transposeB: false },
]

/** The weight matrices' products in a training step of `batch` sequences at full context, and the tied head's. */
export const trainingShapes = (spec: DecoderSpec, batch: number): MatmulShape[] => {
  const m = batch * spec.context
  const weights = paramTable(spec).filter((p) => isMatmul(p.decl) && p.decl.shape.length === 2)
  return [
    ...weights.flatMap((p) => withGradients(m, p.decl.shape[0]!, p.decl.shape[1]!, false)),
    ...(spec.tied ? withGradients(m, spec.width, spec.vocab, true) : []),
  ]
}

/** Timings are a property of the machine, not of a run: kept with the user's caches. */
export const precisionCacheFile = (env: NodeJS.ProcessEnv = process.env): string =>
  join(env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "tinystories-lab", "matmul-precision.json")

export const runPrecision = (spec: DecoderSpec, batch: number): Effect.Effect<string | undefined, never, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function* () {
    const backend = tf.backend()
    if (process.env.TFJS_NATIVE_BF16 !== "auto" || !(backend instanceof NativeBackend)) return undefined
    const info = backend.addon.info()
    const machine = { cpu: cpus()[0]?.model.trim() ?? "unknown CPU", isa: info.isa, threads: info.threads, bf16Native: info.bf16Native }
    const choice = yield* autoPrecision(trainingShapes(spec, batch), machine, precisionCacheFile(), (s) => timeMatmul(backend.addon, s))
    backend.bf16Shapes = choice.bf16
    yield* Console.error(choice.why)
    return choice.why
  })
