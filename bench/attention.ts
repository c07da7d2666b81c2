import * as tf from "@tensorflow/tfjs"
import type { Dims } from "../dsl/kind.js"
import { attention, attentionModule, type AttentionKindTag, type AttentionSpec } from "../dsl/kinds/attention/index.js"
import { attentionApply } from "../src/attention/index.js"
import { peakMeter } from "../src/backend/peak-memory.js"
import { profileKernels } from "./kernel-profile.js"
import { selectBackend } from "../src/backend/select.js"
import type { LayerCtx } from "../src/model/kind.js"

/**
 * `npm run bench -- attention [--backend NAME] [--kinds a,b] [--contexts 256,512] [--reps N] [--profile]`:
 * forward + backward of one attention layer (batch 1, width 256, 4 heads) per kind and
 * context, one JSON line each. Each kind is first run once at the smallest context to warm
 * up; then per context one measured run gives `peakBytes` (the most tensor memory the step
 * held beyond its inputs and parameters: each buffer once on the native backend, tf.profile's
 * count, which adds every reshape again, elsewhere) and `ms`, or the fastest of it and N
 * further timed runs (default 0: the dense 4096 step alone takes minutes on the cpu backend).
 * `--profile` then times every kernel of N + 1 more runs (the first untimed): one JSON line per
 * kernel with its milliseconds per run, matmuls by shape (bench/kernel-profile.ts).
 */
const WIDTH = 256
const HEADS = 4

const specs: Record<AttentionKindTag, AttentionSpec> = {
  full: attention("full", { heads: HEADS }),
  "sparse-strided": attention("sparse-strided", { heads: HEADS, stride: 64 }),
  "sparse-fixed": attention("sparse-fixed", { heads: HEADS, stride: 128, summary: 8 }),
  "sliding-window": attention("sliding-window", { heads: HEADS, window: 128 }),
  longformer: attention("longformer", { heads: HEADS, window: 128, global: [0] }),
  linformer: attention("linformer", { heads: HEADS, k: 128 }),
  "linformer-causal": attention("linformer-causal", { heads: HEADS, k: 64, block: 64 }),
}

const flag = (argv: string[], name: string): string | undefined => {
  const i = argv.indexOf(`--${name}`)
  return i >= 0 ? argv[i + 1] : undefined
}

const step = (spec: AttentionSpec, context: number) => {
  const dims: Dims = { vocab: 2, width: WIDTH, context, layers: 1 }
  const decls = attentionModule(spec).params(spec, dims)
  const names = Object.keys(decls)
  const params = names.map((n, i) => tf.randomNormal([...decls[n]!.shape], 0, 0.05, "float32", i))
  const x = tf.randomNormal([1, context, WIDTH], 0, 1, "float32", 99) as tf.Tensor3D
  const ctx: LayerCtx = { dims, layer: 0, training: true, position: {}, offset: 0, dropout: (t) => t }
  const loss = (...ps: tf.Tensor[]) =>
    tf.sum(attentionApply(spec).apply((n) => ps[names.indexOf(n) + 1]!, ps[0] as tf.Tensor3D, spec, ctx)) as tf.Scalar
  const run = () => {
    const grads = tf.grads(loss)([x, ...params])
    // Reading one value waits for the work (and keeps it from being optimised away).
    grads[0]!.dataSync()
    tf.dispose(grads)
  }
  const dispose = () => tf.dispose([x, ...params])
  return { run, dispose }
}

export const main = async (argv: string[]): Promise<void> => {
  const backend = await selectBackend(flag(argv, "backend") ?? "cpu")
  const kinds = (flag(argv, "kinds")?.split(",") ?? Object.keys(specs)) as AttentionKindTag[]
  const contexts = flag(argv, "contexts")?.split(",").map(Number) ?? [256, 512, 1024, 2048, 4096]
  const reps = Number(flag(argv, "reps") ?? 0)
  const kernels = argv.includes("--profile") ? profileKernels(backend.name) : undefined
  for (const kind of kinds) {
    const spec = specs[kind]
    if (spec === undefined) throw new Error(`unknown kind ${kind}; expected one of ${Object.keys(specs).join(", ")}`)
    // Warms up the kind's code paths once, at a small context.
    const warm = step(spec, Math.min(...contexts))
    warm.run()
    warm.dispose()
    for (const context of contexts) {
      const { run, dispose } = step(spec, context)
      const meter = peakMeter()
      const before = tf.memory().numBytes
      meter?.start()
      const start = performance.now()
      const info = meter ? undefined : await tf.profile(run)
      if (meter) run()
      let ms = performance.now() - start
      const peakBytes = meter ? meter.peakAbove() : info!.peakBytes - before
      for (let r = 0; r < reps; r++) {
        const again = performance.now()
        run()
        ms = Math.min(ms, performance.now() - again)
      }
      if (kernels) {
        run()
        kernels.reset()
        for (let r = 0; r < Math.max(1, reps); r++) run()
        for (const k of kernels.read()) console.log(JSON.stringify({ bench: "attention-profile", kind, context, kernel: k.kernel, callsPerRun: k.calls / Math.max(1, reps), msPerRun: k.ms / Math.max(1, reps) }))
      }
      dispose()
      // Score and weighted-value FLOPs per query as the kind computes them: linear in context exactly when this stays flat.
      const scoreFlops = attentionModule(spec).flops(spec, { vocab: 2, width: WIDTH, context, layers: 1 })
      const line = { kind, label: attentionModule(spec).label(spec), context, ms: Math.round(ms * 10) / 10, peakBytes, scoreFlopsPerQuery: scoreFlops, backend: backend.name }
      console.log(JSON.stringify(line))
    }
  }
}
