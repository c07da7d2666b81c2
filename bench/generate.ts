/**
 * `npm run bench -- generate [--peer DIR | --peer llamacpp] [--repeats N] [--prompt P] [--tokens N]
 * [--threads 1,2] [--models base,stories15m,depth,attention] [--depth-runs DIR] [--backend B]`:
 * greedy generation speed (prompt processing and decoding, tokens/s) and evaluation throughput
 * (tokens/s of the forward pass and loss that `npm run eval` runs), with the blocks and FLOPs per
 * position each spent, of the models of bench/generate-models.ts: the base decoder and a
 * stories15M-shaped llama model (width 288, 6 layers, 6 heads, context 256) with this project's
 * tokenizer (4262 ids), seeded random weights; the depth experiment's models under their policies
 * (trained runs under --depth-runs, default runs/depth, when present) with F, the plain model's
 * FLOPs per position over theirs; and the attention kinds at context 1024. Each measurement is a
 * fresh process with TFJS_NATIVE_THREADS set and OpenMP's passive waiting, as run.c gets. With
 * `--peer ../shared/peers/llama2c`, llama2.c's run.c is built from that directory, the base and
 * llama models are exported to it, and run.c runs the same prompt ids and token count after each
 * of our runs (OMP_NUM_THREADS the same), greedy; its tokens are compared with ours. With `--peer
 * llamacpp`, llama.cpp (bench/llamacpp.ts) runs the models its llama architecture expresses (the
 * stories15M-shaped one), exported to GGUF f32 and q8_0, the same way, each in its own fresh
 * process, and our int8 decoding (`weights: "int8"`) runs beside our float32 one for them: f32's
 * tokens are compared with our float32 run's, q8_0's with our int8 run's. One JSON line per
 * measurement as it happens, interleaved, then one line per model and thread count with the
 * medians and ranges.
 */
import * as tf from "@tensorflow/tfjs"
import { NodeServices } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { spawnSync } from "node:child_process"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { withPolicy } from "../dsl/index.js"
import { selectBackend } from "../src/backend/select.js"
import { prepareData } from "../src/data/prepare.js"
import type { Weights } from "../src/decode/weights.js"
import { DepthTrace } from "../src/depth/trace.js"
import { evaluate, type HostBatch } from "../src/eval/evaluate.js"
import { sampling } from "../src/eval/generate.js"
import { llama2cIds, toLlama2c } from "../src/export/llama2c.js"
import { runsFolder } from "../src/io/paths.js"
import { compile, type Model } from "../src/model/index.js"
import { initValues } from "../src/model/init.js"
import { openRun } from "../src/orchestration/run-dir.js"
import { Rng } from "../src/random/rng.js"
import { ProgressSink } from "../src/io/progress.js"
import { groups, type Subject } from "./generate-models.js"
import { Tokenizer } from "../src/tokenizer/tokenizer.js"
import { buildPeer, runDriver, runStock } from "./llama2c.js"
import { counterpart, exportForLlamaCpp, type PeerType, peerTypes, runLlamaCpp } from "./llamacpp.js"
import { flopRatio, median, spread, thresholdFor } from "./stats.js"

const SEED = 1
/** Evaluation batches of 8 rows timed after the warm-up one (two, 0.4 s, were within the machine's noise; `npm run eval` runs 64). */
const EVAL_BATCHES = 8

const flag = (argv: string[], name: string): string | undefined => {
  const i = argv.indexOf(`--${name}`)
  return i >= 0 ? argv[i + 1] : undefined
}

const round = (x: number): number => Math.round(x * 10) / 10

interface Job {
  readonly subject: Subject
  readonly prompt: number[]
  readonly tokens: number
  readonly backend: string | undefined
  readonly weights: Weights
}

/** What one part of the work spent per position (depth policies spend less than the nominal count). */
interface Spent {
  readonly blocksPerToken: number
  readonly flopsPerPosition: number
}

interface OurRun {
  readonly backend: string
  readonly detail: string
  readonly ids: number[]
  readonly promptTokensPerSecond: number
  readonly decodeTokensPerSecond: number
  readonly evalTokensPerSecond: number
  /** Over the whole generation, prompt included, as `npm run generate` reports it. */
  readonly decode: Spent
  readonly eval: Spent
}

type Params = Record<string, tf.Tensor>

const seededParams = (model: Model): Params => {
  const values = initValues(model.table, SEED)
  return Object.fromEntries(model.table.map((p) => [p.name, tf.tensor(values.get(p.name)!, [...p.decl.shape], "float32")]))
}

/** The subject's model and weights: a trained run's (under the subject's policy), else seeded. */
const load = async (subject: Subject): Promise<{ model: Model; params: Params }> => {
  if (subject.run === undefined) {
    const model = compile(subject.spec)
    return { model, params: seededParams(model) }
  }
  // Clones keep the weights when the scope that read them releases its own.
  const open = await Effect.runPromise(
    Effect.scoped(Effect.map(openRun(subject.run), (o) => ({ ...o, params: Object.fromEntries(Object.entries(o.params).map(([k, v]) => [k, tf.clone(v)])) }))).pipe(
      Effect.provide(NodeServices.layer),
    ),
  )
  const model = subject.policy ? compile(withPolicy(open.run.model, subject.policy)) : open.model
  return { model, params: open.params }
}

/** Evaluation batches of 8 full-context rows of random ids, as npm run eval computes them. */
const evalBatches = (model: Model, rows: number, count: number): HostBatch[] => {
  const context = model.spec.context
  const rng = Rng.derive(SEED, "bench-eval")
  return Array.from({ length: count }, () => ({
    batch: rows,
    context,
    tokens: Int32Array.from({ length: rows * (context + 1) }, () => rng.nextInt(model.spec.vocab)),
    mask: new Float32Array(rows * context).fill(1),
  }))
}

/**
 * A seeded early-exit subject at the threshold where it runs the trained model's blocks per
 * position on one evaluation row; other subjects as they are.
 */
const calibrated = (subject: Subject): Subject => {
  const policy = subject.spec.layers.policy
  if (subject.blocksPerToken === undefined || policy?.kind !== "early-exit") return subject
  const model = compile(subject.spec)
  const params = seededParams(model)
  const batch = evalBatches(model, 1, 1)
  const at = (threshold: number) => compile(withPolicy(subject.spec, { ...policy, threshold }))
  const blocksAt = (threshold: number) => evaluate(at(threshold), params, batch, 1).blocksPerToken
  const [lo, hi] = policy.measure === "softmax" ? [0, 1] : [-1, 1]
  const threshold = thresholdFor(blocksAt, subject.blocksPerToken, lo, hi)
  tf.dispose(Object.values(params))
  return { ...subject, spec: at(threshold).spec }
}

const seconds = (f: () => void): number => {
  const t0 = performance.now()
  f()
  return (performance.now() - t0) / 1000
}

/**
 * Greedy generation timed in two parts: up to the first token (the prompt through the model
 * with a fresh cache, and one sample) and the tokens after it (one position each).
 */
const timedGreedy = (model: Model, params: Params, prompt: number[], tokens: number, weights: Weights, trace?: DepthTrace) => {
  const steps = sampling(model, params, prompt, { tokens, temperature: 0, weights, ...(trace ? { trace } : {}) }, Rng.fromSeed(SEED))
  let step: IteratorResult<number, number[]> | undefined
  const promptSeconds = seconds(() => (step = steps.next()))
  const decodeSeconds = seconds(() => {
    while (!step!.done) step = steps.next()
  })
  return { ids: step!.value as number[], promptSeconds, decodeSeconds }
}

/** One measurement in this process (the child): a warm-up, the timed generation, evaluation batches. */
const measure = async (job: Job): Promise<OurRun> => {
  const choice = await selectBackend(job.backend)
  const { model, params } = await load(job.subject)
  // Random ids: a trained run's vocabulary may be another size than this tokenizer's.
  const prompt = job.prompt.map((id) => id % model.spec.vocab)
  timedGreedy(model, params, prompt, 8, job.weights)
  const trace = new DepthTrace()
  const greedy = timedGreedy(model, params, prompt, job.tokens, job.weights, trace)
  const batches = evalBatches(model, 8, 1 + EVAL_BATCHES)
  evaluate(model, params, batches.slice(0, 1), 1, undefined, job.weights)
  let evaluation: ReturnType<typeof evaluate> | undefined
  const evalSeconds = seconds(() => (evaluation = evaluate(model, params, batches.slice(1), 1, undefined, job.weights)))
  tf.dispose(Object.values(params))
  return {
    backend: choice.name,
    detail: choice.detail,
    ids: greedy.ids,
    promptTokensPerSecond: prompt.length / greedy.promptSeconds,
    // The first token comes from the prompt's logits: each later one is one position through the model.
    decodeTokensPerSecond: (job.tokens - 1) / greedy.decodeSeconds,
    evalTokensPerSecond: (EVAL_BATCHES * 8 * model.spec.context) / evalSeconds,
    decode: { blocksPerToken: trace.blocksPerToken, flopsPerPosition: trace.flopsPerToken },
    eval: { blocksPerToken: evaluation!.blocksPerToken, flopsPerPosition: evaluation!.flopsPerToken },
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

/** What the rounds of one model at one thread count spent per position, with F against its plain model's. */
const spentSummary = (spent: ReadonlyArray<Spent>, plain: ReadonlyArray<Spent> | undefined) => {
  const flops = median(spent.map((x) => x.flopsPerPosition))
  return {
    blocksPerToken: Math.round(median(spent.map((x) => x.blocksPerToken)) * 1000) / 1000,
    flopsPerPosition: Math.round(flops),
    ...(plain === undefined ? {} : { F: flopRatio(median(plain.map((x) => x.flopsPerPosition)), flops) }),
  }
}

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
  const depthRuns = flag(argv, "depth-runs")
  const peerDir = flag(argv, "peer")
  const backend = flag(argv, "backend")
  if (!(tokens >= 2)) throw new Error(`--tokens ${flag(argv, "tokens")}: at least 2 (decoding is timed from the second token)`)
  for (const n of names) if (groups[n] === undefined) throw new Error(`unknown models "${n}"; expected ${Object.keys(groups).join(", ")}`)

  const tok = await tokenizer()
  const listed = names.flatMap((n) => groups[n]!(tok.vocabSize, depthRuns === "none" ? undefined : resolve(depthRuns ?? join(runsFolder(), "depth"))))
  // Calibrating seeded early exit runs its evaluation here, on the backend the children use.
  if (listed.some((s) => s.blocksPerToken !== undefined && s.run === undefined)) await selectBackend(backend)
  const subjects = listed.map(calibrated)
  const promptOf = (s: Subject): number => (s.longPrompt ? s.spec.context - tokens : promptLength)
  for (const s of subjects) {
    if (promptOf(s) < 1) throw new Error(`--tokens ${tokens} leaves no prompt for ${s.name} (context ${s.spec.context})`)
    console.log(JSON.stringify({ bench: "generate", model: s.name, weights: s.run ?? "seeded", prompt: promptOf(s), ...(s.spec.layers.policy ? { policy: s.policy ?? s.spec.layers.policy } : {}) }))
  }
  const rng = Rng.derive(SEED, "bench-prompt")
  // <|endoftext|> first, as in training (and as run.c's BOS after export), then random ids; each model takes as many as its prompt needs.
  const ids = [tok.eotId, ...Array.from({ length: Math.max(...subjects.map(promptOf)) - 1 }, () => rng.nextInt(tok.vocabSize))]
  const work = mkdtempSync(join(tmpdir(), "bench-generate-"))
  try {
    const llamacpp = peerDir === "llamacpp"
    const peer = peerDir === undefined || llamacpp ? undefined : buildPeer(peerDir, work)
    const exported = new Map<string, string>()
    const ggufs = new Map<string, Record<PeerType, string>>()
    for (const s of subjects.filter((x) => x.peer && (peer || llamacpp))) {
      const values = Object.fromEntries(initValues(compile(s.spec).table, SEED))
      if (llamacpp) {
        const files = exportForLlamaCpp(s.name.replaceAll("/", "-"), s.spec, values, tok, work)
        if (files) ggufs.set(s.name, files)
        continue
      }
      const result = toLlama2c(s.spec, values, tok)
      if (!result.ok) continue
      mkdirSync(join(work, s.name))
      for (const f of result.files) writeFileSync(join(work, s.name, f.name), f.data)
      exported.set(s.name, join(work, s.name))
    }
    // Our int8 decoding, q8_0's counterpart, needs the native decode program: refused here rather than in the first round's child.
    if (ggufs.size > 0) await selectBackend(backend)
    for (const name of ggufs.keys()) {
      if (!compile(subjects.find((s) => s.name === name)!.spec).decodesNatively()) {
        throw new Error(`--peer llamacpp compares q8_0 with our int8 decoding of ${name}, which runs on the native decode program only: the native backend (--backend native, TFJS_NATIVE_DECODE not 0)`)
      }
    }
    const map = llama2cIds(tok)
    const back = new Map(Array.from(map, (to, from) => [to, from]))
    /** A peer's run in tokens/s, and whether its greedy tokens are ours. */
    type PeerRun = { prompt: number; decode: number; same: boolean }
    type Row = { ours: OurRun; int8?: OurRun; runc?: PeerRun & { own?: number }; llamacpp?: Partial<Record<PeerType, PeerRun>> }
    const rows = new Map<string, Row[]>()
    const key = (name: string, t: number) => `${name}@${t}`
    for (let r = 0; r < repeats; r++) {
      for (const s of subjects) {
        const prompt = ids.slice(0, promptOf(s))
        for (const t of threads) {
          const side = (weights: Weights): OurRun => {
            const o = ours({ subject: s, prompt, tokens, backend, weights }, t)
            const line = {
              bench: "generate", model: s.name, side: "ours", weights, backend: o.backend, threads: t, repeat: r, prompt: prompt.length, tokens,
              promptTokensPerSecond: round(o.promptTokensPerSecond), decodeTokensPerSecond: round(o.decodeTokensPerSecond), evalTokensPerSecond: round(o.evalTokensPerSecond),
              decode: o.decode, eval: o.eval,
            }
            console.log(JSON.stringify(line))
            return o
          }
          const o = side("fp32")
          const files = ggufs.get(s.name)
          const row: Row = { ours: o, ...(files ? { int8: side("int8") } : {}) }
          const dir = exported.get(s.name)
          if (peer && dir) {
            const d = runDriver(peer, join(dir, "model.bin"), prompt.map((id) => map[id]!), tokens, t)
            // run.c's own program, from BOS alone for as many positions: its own figure, for comparison with the driver's.
            const own = runStock(peer, dir, prompt.length + tokens, t).tokensPerSecond
            row.runc = { prompt: prompt.length / d.promptSeconds, decode: (tokens - 1) / d.decodeSeconds, ...(own === undefined ? {} : { own }), same: d.tokens.every((id, i) => back.get(id) === o.ids[i]) }
            console.log(JSON.stringify({ bench: "generate", model: s.name, side: "run.c", threads: t, repeat: r, prompt: prompt.length, tokens, promptTokensPerSecond: round(row.runc.prompt), decodeTokensPerSecond: round(row.runc.decode), ownReportTokensPerSecond: own, sameTokens: row.runc.same }))
          }
          if (files) {
            row.llamacpp = {}
            for (const type of peerTypes) {
              const l = runLlamaCpp(files[type], prompt, tokens, t)
              const same = l.tokens.every((id, i) => id === { fp32: o, int8: row.int8! }[counterpart[type]].ids[i])
              // Timed as ours: the prompt with the first pick, then one position per later token.
              const run = { prompt: prompt.length / l.promptSeconds, decode: (tokens - 1) / l.decodeSeconds, same }
              row.llamacpp[type] = run
              console.log(JSON.stringify({ bench: "generate", model: s.name, side: "llama.cpp", weights: type, threads: t, repeat: r, prompt: prompt.length, tokens, promptTokensPerSecond: round(run.prompt), decodeTokensPerSecond: round(run.decode), sameTokens: same, against: `ours ${counterpart[type]}` }))
            }
          }
          rows.set(key(s.name, t), [...(rows.get(key(s.name, t)) ?? []), row])
        }
      }
    }
    const ourSummary = (runs: ReadonlyArray<OurRun>) => ({
      promptTokensPerSecond: spread(runs.map((x) => x.promptTokensPerSecond)),
      decodeTokensPerSecond: spread(runs.map((x) => x.decodeTokensPerSecond)),
      evalTokensPerSecond: spread(runs.map((x) => x.evalTokensPerSecond)),
    })
    const peerSummary = (runs: ReadonlyArray<PeerRun>) => ({
      promptTokensPerSecond: spread(runs.map((x) => x.prompt)),
      decodeTokensPerSecond: spread(runs.map((x) => x.decode)),
      sameTokens: runs.every((x) => x.same),
    })
    for (const s of subjects) {
      for (const t of threads) {
        const rs = rows.get(key(s.name, t))!
        const plain = s.plain === undefined || s.plain === s.name ? undefined : rows.get(key(s.plain, t))
        const int8 = rs.flatMap((x) => (x.int8 ? [x.int8] : []))
        const runc = rs.flatMap((x) => (x.runc ? [x.runc] : []))
        const llamaOf = (type: PeerType) => rs.flatMap((x) => (x.llamacpp?.[type] ? [x.llamacpp[type]] : []))
        console.log(
          JSON.stringify({
            bench: "generate",
            summary: "median (min–max)",
            model: s.name,
            backend: rs[0]!.ours.backend,
            detail: rs[0]!.ours.detail,
            threads: t,
            repeats: rs.length,
            prompt: promptOf(s),
            tokens,
            ours: {
              ...ourSummary(rs.map((x) => x.ours)),
              decode: spentSummary(rs.map((x) => x.ours.decode), plain?.map((x) => x.ours.decode)),
              eval: spentSummary(rs.map((x) => x.ours.eval), plain?.map((x) => x.ours.eval)),
            },
            ...(int8.length > 0 ? { oursInt8: ourSummary(int8) } : {}),
            ...(runc.length > 0
              ? {
                  runc: {
                    ...peerSummary(runc),
                    ...(runc.every((x) => x.own !== undefined) ? { ownReportTokensPerSecond: spread(runc.map((x) => x.own!)) } : {}),
                  },
                }
              : {}),
            ...(ggufs.has(s.name) ? { llamacpp: Object.fromEntries(peerTypes.map((type) => [type, { ...peerSummary(llamaOf(type)), against: `ours ${counterpart[type]}` }])) } : {}),
          }),
        )
      }
    }
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
}
