import * as tf from "@tensorflow/tfjs"
import { attention, attentionModule } from "../src/attention/index.js"
import { selectBackend } from "../src/backend/select.js"
const kindArg = process.argv[2] ?? "sliding-window"
const T = Number(process.argv[3] ?? 1024)
const specs: any = {
  "sliding-window": attention("sliding-window", { heads: 4, window: 128 }),
  "sparse-strided": attention("sparse-strided", { heads: 4, stride: 64 }),
  longformer: attention("longformer", { heads: 4, window: 128, global: [0] }),
  full: attention("full", { heads: 4 }),
}
await selectBackend("native")
const spec = specs[kindArg]
const dims = { vocab: 2, width: 256, context: T, layers: 1 }
const decls = attentionModule(spec).params(spec, dims)
const names = Object.keys(decls)
const params = names.map((n, i) => tf.randomNormal([...(decls as any)[n].shape], 0, 0.05, "float32", i))
const x = tf.randomNormal([1, T, 256], 0, 1, "float32", 99)
const ctx: any = { dims, layer: 0, training: true, position: {}, offset: 0, dropout: (t: any) => t }
const loss = (...ps: tf.Tensor[]) => tf.sum(attentionModule(spec).apply((n: string) => ps[names.indexOf(n) + 1]!, ps[0] as any, spec, ctx)) as tf.Scalar
const run = () => { const g = tf.grads(loss)([x, ...params]); g[0]!.dataSync(); tf.dispose(g) }
run()
const t0 = performance.now(); run(); console.log("step ms", performance.now() - t0)
const info = await tf.profile(run)
const agg = new Map<string, number>()
for (const k of info.kernels) { const ms = await (k as any).kernelTimeMs; const key = k.name; agg.set(key, (agg.get(key) ?? 0) + (typeof ms === "number" ? ms : 0)) }
console.log([...agg].sort((a, b) => b[1] - a[1]).slice(0, 15))
let peak = 0, at = ""
for (const k of info.kernels) { if (k.totalBytesSnapshot > peak) { peak = k.totalBytesSnapshot; at = k.name } }
console.log("peak", info.peakBytes / 1e6, "MB; top allocations:")
console.log(info.kernels.filter((k) => k.bytesAdded > 4e6).map((k) => `${k.name} ${(k.bytesAdded / 1e6).toFixed(1)}MB in=${JSON.stringify(k.inputShapes)} out=${JSON.stringify(k.outputShapes)}`).join("\n"))
