/**
 * `npm run bench -- generate [--peer DIR] [--repeats N] [--prompt P] [--tokens N] [--threads 1,2]
 * [--models base,stories15m] [--backend B]`: greedy generation speed (prompt processing and
 * decoding, tokens/s) and evaluation throughput (tokens/s of the forward pass and loss that
 * `npm run eval` runs) of the base decoder and a stories15M-shaped llama model (width 288, 6
 * layers, 6 heads, context 256) with this project's tokenizer (4262 ids), seeded random
 * weights. Each measurement is a fresh process with TFJS_NATIVE_THREADS set and OpenMP's
 * passive waiting, as run.c gets. With `--peer ../shared/peers/llama2c`, llama2.c's run.c is
 * built from that directory, the llama model is exported to it, and run.c runs the same prompt
 * ids and token count after each of our runs (OMP_NUM_THREADS the same), greedy; its tokens are
 * compared with ours. One JSON line per measurement as it happens, interleaved, then one line
 * per model and thread count with the medians.
 */
import * as tf from "@tensorflow/tfjs"
import { NodeServices } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { spawnSync } from "node:child_process"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { type DecoderSpec, gpt2, llama } from "../dsl/index.js"
import { selectBackend } from "../src/backend/select.js"
import { prepareData } from "../src/data/prepare.js"
import { evaluate, type HostBatch } from "../src/eval/evaluate.js"
import { generate } from "../src/eval/generate.js"
import { llama2cIds, toLlama2c } from "../src/export/llama2c.js"
import { compile, DecodeCache, type Model } from "../src/model/index.js"
import { initValues } from "../src/model/init.js"
import { Rng } from "../src/random/rng.js"
import { ProgressSink } from "../src/io/progress.js"
import { Tokenizer } from "../src/tokenizer/tokenizer.js"
import { buildPeer, runDriver, runStock } from "./llama2c.js"

const SEED = 1

const models: Record<string, (vocab: number) => DecoderSpec> = {
  base: (vocab) => gpt2({ vocab, width: 256, context: 256, layers: 4, heads: 4, activation: "relu" }),
  stories15m: (vocab) => llama({ vocab, width: 288, context: 256, layers: 6, heads: 6 }),
}

const flag = (argv: string[], name: string): string | undefined => {
  const i = argv.indexOf(`--${name}`)
  return i >= 0 ? argv[i + 1] : undefined
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

const round = (x: number): number => Math.round(x * 10) / 10

interface Job {
  readonly model: string
  readonly vocab: number
  readonly prompt: number[]
  readonly tokens: number
  readonly backend: string | undefined
}

interface OurRun {
  readonly backend: string
  readonly detail: string
  readonly ids: number[]
  readonly promptTokensPerSecond: number
  readonly decodeTokensPerSecond: number
  readonly evalTokensPerSecond: number
}

const seconds = (f: () => void): number => {
  const t0 = performance.now()
  f()
  return (performance.now() - t0) / 1000
}

/** The prompt through the model with a fresh cache, its last logits read: what generate does first. */
const prefill = (model: Model, params: Record<string, tf.Tensor>, prompt: number[]): void => {
  const cache = new DecodeCache()
  if (model.decodeNative(params, prompt, cache) === undefined) {
    tf.tidy(() => {
      const logits = model.apply(params, tf.tensor2d([prompt], [1, prompt.length], "int32"), { cache })
      tf.slice(logits, [0, prompt.length - 1, 0], [1, 1, model.spec.vocab]).dataSync()
    })
  }
  cache.dispose()
}

/** One measurement in this process (the child): prefill, whole generation, evaluation batches. */
const measure = async (job: Job): Promise<OurRun> => {
  const choice = await selectBackend(job.backend)
  const model = compile(models[job.model]!(job.vocab))
  const values = initValues(model.table, SEED)
  const params = Object.fromEntries(model.table.map((p) => [p.name, tf.tensor(values.get(p.name)!, [...p.decl.shape], "float32")]))
  const greedy = (tokens: number) => generate(model, params, job.prompt, { tokens, temperature: 0 }, Rng.fromSeed(SEED))
  greedy(8)
  const prefillSeconds = seconds(() => prefill(model, params, job.prompt))
  let ids: number[] = []
  const generateSeconds = seconds(() => (ids = greedy(job.tokens)))
  // Evaluation: batches of 8 full-context rows through the loss, as npm run eval computes it.
  const context = model.spec.context
  const rng = Rng.derive(SEED, "bench-eval")
  const batch = (): HostBatch => ({
    batch: 8,
    context,
    tokens: Int32Array.from({ length: 8 * (context + 1) }, () => rng.nextInt(job.vocab)),
    mask: new Float32Array(8 * context).fill(1),
  })
  const batches = [batch(), batch(), batch()]
  evaluate(model, params, batches.slice(0, 1), 1)
  const evalSeconds = seconds(() => evaluate(model, params, batches.slice(1), 1))
  tf.dispose(Object.values(params))
  return {
    backend: choice.name,
    detail: choice.detail,
    ids,
    promptTokensPerSecond: job.prompt.length / prefillSeconds,
    // generate's time less its prefill: the time of the tokens after the prompt.
    decodeTokensPerSecond: job.tokens / (generateSeconds - prefillSeconds),
    evalTokensPerSecond: (2 * 8 * context) / evalSeconds,
  }
}

const ours = (job: Job, threads: number): OurRun => {
  const r = spawnSync(process.execPath, ["--import", "tsx", join(import.meta.dirname, "index.ts"), "generate", "--child", JSON.stringify(job)], {
    // Passive waiting, as run.c gets: on a busy machine a spinning OpenMP thread is descheduled and the next fork waits for it.
    env: { ...process.env, TFJS_NATIVE_THREADS: String(threads), OMP_WAIT_POLICY: "passive" },
    encoding: "utf8",
    maxBuffer: 1 << 24,
  })
  if (r.status !== 0) throw new Error(`the benchmark child failed (${r.status ?? r.signal}):\n${r.stderr}`)
  return JSON.parse(r.stdout.trim().split("\n").at(-1)!) as OurRun
}

const tokenizer = () =>
  Effect.runPromise(
    prepareData({ tokenizer: { vocabSize: 4096 }, extra: false, progress: false }).pipe(Effect.provide(Layer.merge(NodeServices.layer, ProgressSink.stderr))),
  ).then((d) => {
    // The benchmark trains its own BPE, which llama2cIds maps to run.c's layout.
    if (!(d.tokenizer instanceof Tokenizer)) throw new Error("expected the trained byte-level BPE")
    return d.tokenizer
  })

export const main = async (argv: string[]): Promise<void> => {
  const child = flag(argv, "child")
  if (child !== undefined) {
    console.log(JSON.stringify(await measure(JSON.parse(child) as Job)))
    return
  }
  const repeats = Number(flag(argv, "repeats") ?? 3)
  const promptLength = Number(flag(argv, "prompt") ?? 16)
  const tokens = Number(flag(argv, "tokens") ?? 240)
  const threads = (flag(argv, "threads") ?? "1,2").split(",").map(Number)
  const names = (flag(argv, "models") ?? "base,stories15m").split(",")
  const peerDir = flag(argv, "peer")
  for (const n of names) if (models[n] === undefined) throw new Error(`unknown model "${n}"; expected ${Object.keys(models).join(", ")}`)

  const tok = await tokenizer()
  const rng = Rng.derive(SEED, "bench-prompt")
  // <|endoftext|> first, as in training (and as run.c's BOS after export), then random ids.
  const prompt = [tok.eotId, ...Array.from({ length: promptLength - 1 }, () => rng.nextInt(tok.vocabSize))]
  const work = mkdtempSync(join(tmpdir(), "bench-generate-"))
  try {
    const peer = peerDir === undefined ? undefined : buildPeer(peerDir, work)
    const exported = new Map<string, string>()
    if (peer) {
      for (const n of names) {
        const spec = models[n]!(tok.vocabSize)
        const values = initValues(compile(spec).table, SEED)
        const result = toLlama2c(spec, Object.fromEntries(values), tok)
        if (!result.ok) continue
        mkdirSync(join(work, n))
        for (const f of result.files) writeFileSync(join(work, n, f.name), f.data)
        exported.set(n, join(work, n))
      }
    }
    const map = llama2cIds(tok)
    const back = new Map(Array.from(map, (to, from) => [to, from]))
    type Row = { ours: OurRun; runc?: { prompt: number; decode: number; own?: number; same: boolean } }
    const rows = new Map<string, Row[]>()
    for (let r = 0; r < repeats; r++) {
      for (const n of names) {
        for (const t of threads) {
          const o = ours({ model: n, vocab: tok.vocabSize, prompt, tokens, backend: flag(argv, "backend") }, t)
          const line = { bench: "generate", model: n, side: "ours", backend: o.backend, threads: t, repeat: r, prompt: promptLength, tokens, promptTokensPerSecond: round(o.promptTokensPerSecond), decodeTokensPerSecond: round(o.decodeTokensPerSecond), evalTokensPerSecond: round(o.evalTokensPerSecond) }
          console.log(JSON.stringify(line))
          const row: Row = { ours: o }
          const dir = exported.get(n)
          if (peer && dir) {
            const d = runDriver(peer, join(dir, "model.bin"), prompt.map((id) => map[id]!), tokens, t)
            // run.c's own program, from BOS alone for as many positions: its own figure, for comparison with the driver's.
            const own = runStock(peer, dir, promptLength + tokens, t).tokensPerSecond
            row.runc = { prompt: promptLength / d.promptSeconds, decode: tokens / d.decodeSeconds, ...(own === undefined ? {} : { own }), same: d.tokens.every((id, i) => back.get(id) === o.ids[i]) }
            console.log(JSON.stringify({ bench: "generate", model: n, side: "run.c", threads: t, repeat: r, prompt: promptLength, tokens, promptTokensPerSecond: round(row.runc.prompt), decodeTokensPerSecond: round(row.runc.decode), ownReportTokensPerSecond: own, sameTokens: row.runc.same }))
          }
          rows.set(`${n}/${t}`, [...(rows.get(`${n}/${t}`) ?? []), row])
        }
      }
    }
    for (const [key, rs] of rows) {
      const [model, t] = key.split("/")
      const runc = rs.flatMap((x) => (x.runc ? [x.runc] : []))
      console.log(
        JSON.stringify({
          bench: "generate",
          summary: "median",
          model,
          backend: rs[0]!.ours.backend,
          detail: rs[0]!.ours.detail,
          threads: Number(t),
          repeats: rs.length,
          prompt: promptLength,
          tokens,
          ours: {
            promptTokensPerSecond: round(median(rs.map((x) => x.ours.promptTokensPerSecond))),
            decodeTokensPerSecond: round(median(rs.map((x) => x.ours.decodeTokensPerSecond))),
            evalTokensPerSecond: round(median(rs.map((x) => x.ours.evalTokensPerSecond))),
          },
          ...(runc.length > 0
            ? {
                runc: {
                  promptTokensPerSecond: round(median(runc.map((x) => x.prompt))),
                  decodeTokensPerSecond: round(median(runc.map((x) => x.decode))),
                  ...(runc.every((x) => x.own !== undefined) ? { ownReportTokensPerSecond: round(median(runc.map((x) => x.own!))) } : {}),
                  sameTokens: runc.every((x) => x.same),
                },
              }
            : {}),
        }),
      )
    }
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
}
