/**
 * `npm run bench -- prune [--run DIR]... [--rounds N] [--steps N] [--generate N] [--backend X] [--threads N]`:
 * what structured pruning buys in speed. The unpruned base decoder (config R: vocab 4096,
 * width 256, 4 layers of 4 heads, context 256) against smaller models, side by side: tokens/s
 * of a training step (batch 16 × 256, AdamW) and of generation (batch 1, KV cache, N new
 * tokens after a 16-token prompt), in interleaved rounds (the models take turns, so drifts of
 * the machine's speed hit all alike), then each model's medians. Without --run the smaller
 * models are config R with half of its heads (2 of 64 per block), half of its FFN neurons
 * (512 per block) and both; with --run DIR (repeatable), the models of those run directories'
 * spec.json (a pruned run's is its smaller model). Weights are random: speed does not depend
 * on their values. One JSON line per model and round, then one per model with the medians.
 */
import { readFileSync } from "node:fs"
import { join } from "node:path"
import * as tf from "@tensorflow/tfjs"
import { Result } from "effect"
import { decodeSpec } from "../dsl/decode.js"
import { attention, block, decoder, depth, ffn, gpt2, norm, posenc, type DecoderSpec } from "../dsl/index.js"
import { selectBackend } from "../src/backend/select.js"
import { generate } from "../src/eval/generate.js"
import { compile, type Model } from "../src/model/index.js"
import { Rng } from "../src/random/rng.js"
import { AdamW } from "../src/optimizer/adamw.js"

const BATCH = 16
const CONTEXT = 256

const flag = (argv: string[], name: string): string | undefined => {
  const i = argv.indexOf(name)
  return i >= 0 ? argv[i + 1] : undefined
}
const flags = (argv: string[], name: string): string[] => argv.flatMap((a, i) => (a === name && argv[i + 1] !== undefined ? [argv[i + 1]!] : []))

const configR = gpt2({ vocab: 4096, width: 256, context: CONTEXT, layers: 4, heads: 4, activation: "relu" })
const sized = (heads: number, headDim: number, hidden: number): DecoderSpec =>
  decoder({
    vocab: 4096,
    width: 256,
    context: CONTEXT,
    posenc: posenc("learned"),
    norm: norm("layer"),
    layers: depth(4, block({ attention: attention("full", { heads, headDim }), ffn: ffn("relu", { hidden }), norm: norm("layer") })),
  })

const defaults: Array<[string, DecoderSpec]> = [
  ["unpruned", configR],
  ["heads-50", sized(2, 64, 1024)],
  ["neurons-50", sized(4, 64, 512)],
  ["heads-50+neurons-50", sized(2, 64, 512)],
]

const fromRun = (dir: string): [string, DecoderSpec] => {
  const decoded = decodeSpec((JSON.parse(readFileSync(join(dir, "spec.json"), "utf8")) as { model: unknown }).model)
  if (Result.isFailure(decoded)) throw new Error(`${dir}/spec.json: ${decoded.failure.message}`)
  return [dir, decoded.success]
}

const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

interface Bench {
  readonly name: string
  readonly model: Model
  readonly train: () => void
  readonly generate: (tokens: number) => void
  readonly dispose: () => void
}

const prepare = (name: string, spec: DecoderSpec): Bench => {
  const model = compile(spec)
  const params = model.init(1) as Record<string, tf.Variable>
  const optimizer = new AdamW(params, { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, decay: (n) => model.table.find((p) => p.name === n)?.decl.decay ?? false })
  const paramOf = new Map(Object.entries(params).map(([n, v]) => [v.name, n]))
  const rng = Rng.derive(1, `bench-prune/${name}`)
  const tokens = new Int32Array(BATCH * (spec.context + 1))
  const train = () => {
    for (let i = 0; i < tokens.length; i++) tokens[i] = rng.nextInt(spec.vocab)
    const batch = { tokens: tf.tensor2d(tokens, [BATCH, spec.context + 1], "int32"), mask: tf.ones([BATCH, spec.context]) as tf.Tensor2D }
    const { value, grads } = tf.variableGrads(() => model.loss(params, batch, { training: true }))
    value.dataSync()
    optimizer.update(Object.fromEntries(Object.entries(grads).map(([v, g]) => [paramOf.get(v) ?? v, g])), 1e-4)
    tf.dispose([value, batch.tokens, batch.mask, ...Object.values(grads)])
  }
  const prompt = Array.from({ length: 16 }, (_, i) => (i * 37) % spec.vocab)
  return {
    name,
    model,
    train,
    generate: (n) => void generate(model, params, prompt, { tokens: n, temperature: 1 }, Rng.derive(1, "bench-prune/sample")),
    dispose: () => {
      optimizer.dispose()
      tf.dispose(Object.values(params))
    },
  }
}

const seconds = (f: () => void): number => {
  const start = process.hrtime.bigint()
  f()
  return Number(process.hrtime.bigint() - start) / 1e9
}

export const main = async (argv: string[]): Promise<void> => {
  const threads = flag(argv, "--threads")
  if (threads !== undefined) process.env.TFJS_NATIVE_THREADS = threads
  const rounds = Number(flag(argv, "--rounds") ?? 3)
  const steps = Number(flag(argv, "--steps") ?? 3)
  const newTokens = Number(flag(argv, "--generate") ?? 64)
  const choice = await selectBackend(flag(argv, "--backend"))
  const runs = flags(argv, "--run")
  const models = runs.length > 0 ? runs.map(fromRun) : defaults
  const benches = models.map(([name, spec]) => prepare(name, spec))
  // One warm-up of each, so first-call costs (kernel selection, allocation) are not timed.
  for (const b of benches) {
    b.train()
    b.generate(4)
  }
  const figures = new Map(benches.map((b) => [b.name, { train: [] as number[], generate: [] as number[] }]))
  for (let round = 1; round <= rounds; round++) {
    for (const b of benches) {
      const train = (steps * BATCH * b.model.spec.context) / seconds(() => Array.from({ length: steps }, b.train))
      const gen = newTokens / seconds(() => b.generate(newTokens))
      figures.get(b.name)!.train.push(train)
      figures.get(b.name)!.generate.push(gen)
      console.log(JSON.stringify({ bench: "prune", round, model: b.name, trainTokensPerSecond: Math.round(train), generateTokensPerSecond: Math.round(gen) }))
    }
  }
  const first = figures.get(benches[0]!.name)!
  for (const b of benches) {
    const f = figures.get(b.name)!
    console.log(
      JSON.stringify({
        bench: "prune",
        model: b.name,
        backend: choice.name,
        detail: choice.detail,
        params: b.model.counts,
        gflopPerTrainingToken: b.model.flops.training / 1e9,
        rounds,
        train: { tokensPerSecond: Math.round(median(f.train)), range: [Math.round(Math.min(...f.train)), Math.round(Math.max(...f.train))], speedup: median(f.train) / median(first.train) },
        generate: { tokensPerSecond: Math.round(median(f.generate)), range: [Math.round(Math.min(...f.generate)), Math.round(Math.max(...f.generate))], speedup: median(f.generate) / median(first.generate) },
      }),
    )
  }
  for (const b of benches) b.dispose()
}
