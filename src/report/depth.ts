import { Console, Data, Effect, FileSystem, Path } from "effect"
import type { Measure } from "../../dsl/kinds/depth/early-exit.js"
import { evaluateRun } from "../orchestration/evaluate-run.js"
import { generate } from "../eval/generate.js"
import type { Derivation } from "../orchestration/derive-run.js"
import type { RunSpec } from "../experiment/define.js"
import { type OpenRun, openRun, readRunSpec } from "../orchestration/run-dir.js"
import { compile, type Model } from "../model/compile.js"
import { Rng } from "../random/rng.js"
import { meanStd } from "./results.js"
import { DepthTrace } from "../depth/trace.js"
import { blockCount, exitsAt, keptBlocks } from "../orchestration/depth-variants.js"

/**
 * What dynamic depth buys, measured on trained runs without training anything: each run's
 * validation bits per byte and the compute it spends, pruned to every other block, and with
 * early exits at several thresholds, with generation speed. Rows are means ± standard
 * deviations over the seeds of a variant.
 */
export interface ReportOptions {
  readonly thresholds: ReadonlyArray<number>
  readonly measure?: Measure
  /** Validation tokens per evaluation (default: each run's eval.tokens). */
  readonly tokens?: number
  /** Tokens generated for the speed figure. */
  readonly generate: number
}

interface Measured {
  readonly bpb: number
  readonly blocks: number
  readonly flops: number
  readonly tokensPerSecond: number
  readonly genBlocks: number
}

export class ReportError extends Data.TaggedError("ReportError")<{ readonly message: string }> {}

/** A model derived from a run's, compiled: checked before anything is measured. */
interface Derived {
  readonly derivation: Derivation
  readonly model: Model
}

/** What the report measures on one run: the run itself, every other block of it, its exits at each threshold. */
interface Plan {
  readonly dir: string
  readonly run: RunSpec
  readonly half?: Derived
  readonly exits: ReadonlyArray<{ readonly label: string; readonly derived: Derived }>
}

const planOf = (dir: string, run: RunSpec, o: ReportOptions) =>
  Effect.try({
    try: (): Plan => {
      const derived = (derivation: Derivation): Derived => ({ derivation, model: compile(derivation.model) })
      const model = run.model
      const policy = model.layers.policy
      const halves = (policy === undefined || policy.kind === "layer-drop") && blockCount(model) >= 2
      const exits =
        policy?.kind === "early-exit"
          ? o.thresholds.map((threshold) => ({
              label: `${o.measure ?? policy.measure}>${threshold}`,
              derived: derived(exitsAt(model, { threshold, ...(o.measure ? { measure: o.measure } : {}) })),
            }))
          : []
      return { dir, run, exits, ...(halves ? { half: derived(keptBlocks(model, (i) => i % 2 === 0, "every-other")) } : {}) }
    },
    catch: (e) => new ReportError({ message: `${dir}: ${(e as Error).message}` }),
  })

/** The run's model replaced by a derived one over the same trained tensors. */
const derivedRun = (open: OpenRun, { derivation, model }: Derived): OpenRun => ({
  ...open,
  run: { ...open.run, model: derivation.model },
  model,
  params: Object.fromEntries(model.table.map((p) => [p.name, open.params[derivation.source(p.name)]!])),
})

const measure = (open: OpenRun, o: ReportOptions) =>
  Effect.gen(function* () {
    const e = yield* evaluateRun(open, o.tokens !== undefined ? { tokens: o.tokens } : {})
    const s = open.run.training.sample
    const prompt = [...open.tokenizer.promptStart, ...open.tokenizer.encode(s.prompt)]
    const sampling = { temperature: s.temperature, topK: s.topK > 0 ? s.topK : undefined, topP: s.topP }
    // A short warm-up, then the timed generation; no stop token, so every run produces the same count.
    generate(open.model, open.params, prompt, { ...sampling, tokens: 4 }, Rng.derive(open.run.seed, "warm-up"))
    const trace = new DepthTrace()
    const started = performance.now()
    const ids = generate(open.model, open.params, prompt, { ...sampling, tokens: o.generate, trace }, Rng.derive(open.run.seed, "sample"))
    const seconds = (performance.now() - started) / 1000
    return { bpb: e.bpb, blocks: e.blocksPerToken, flops: e.flopsPerToken, tokensPerSecond: ids.length / seconds, genBlocks: trace.blocksPerToken } satisfies Measured
  })

interface Row {
  readonly variant: string
  readonly label: string
  readonly seed: number
  readonly values: ReadonlyArray<number>
}

const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<Row>, digits: ReadonlyArray<number>): string => {
  const keys = [...new Set(rows.map((r) => `${r.variant}\u0000${r.label}`))]
  const line = (cells: ReadonlyArray<string>) => `| ${cells.join(" | ")} |`
  const body = keys.map((key) => {
    const rs = rows.filter((r) => `${r.variant}\u0000${r.label}` === key)
    const cells = digits.map((dg, k) => {
      const xs = rs.map((r) => r.values[k]!)
      const { mean, std } = meanStd(xs)
      return xs.length > 1 ? `${mean.toFixed(dg)} ± ${std.toFixed(dg)}` : mean.toFixed(dg)
    })
    return line([rs[0]!.variant, rs[0]!.label, String(rs.length), ...cells])
  })
  return [line(header), line(header.map(() => "---")), ...body].join("\n")
}

/** The run directories under `dir` (those with a spec.json and a checkpoint), sorted. */
const runDirs = (dir: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const files = yield* fs.readDirectory(dir, { recursive: true }).pipe(
      Effect.mapError(() => new ReportError({ message: `${dir}: no such directory (expected an experiment's name under the runs folder, or a directory of runs)` })),
    )
    const dirs = files
      .filter((f) => path.basename(f) === "spec.json")
      .map((f) => path.join(dir, path.dirname(f)))
      .filter((d) => !d.split(path.sep).includes("checkpoint"))
      .sort()
    if (dirs.length === 0) return yield* new ReportError({ message: `${dir}: no run directories (with a spec.json) under it` })
    return dirs
  })

export const depthReport = (dir: string, o: ReportOptions) =>
  Effect.gen(function* () {
    // Every run's derived models are built first: a threshold its measure cannot reach is refused before any evaluation.
    const plans: Plan[] = []
    for (const runDir of yield* runDirs(dir)) plans.push(yield* planOf(runDir, yield* readRunSpec(runDir), o))
    const pruned: Row[] = []
    const exits: Row[] = []
    for (const [i, plan] of plans.entries()) {
      // Each run takes one to a few evaluations: say where the report is.
      yield* Console.error(`[${i + 1}/${plans.length}] ${plan.dir}`)
      yield* Effect.scoped(
        Effect.gen(function* () {
          const open = yield* openRun(plan.dir)
          const { variant, seed, model } = open.run
          const full = yield* measure(open, o)
          if (plan.half !== undefined) {
            const half = yield* measure(derivedRun(open, plan.half), o)
            pruned.push({ variant, label: `${blockCount(model)} → ${Math.ceil(blockCount(model) / 2)}`, seed, values: [full.bpb, half.bpb, full.flops / 1e6, half.flops / 1e6] })
          }
          if (model.layers.policy?.kind !== "early-exit") {
            exits.push({ variant, label: model.layers.policy?.kind ?? "none", seed, values: [full.bpb, full.blocks, full.flops / 1e6, full.tokensPerSecond, full.genBlocks] })
            return
          }
          for (const { label, derived } of plan.exits) {
            const m = yield* measure(derivedRun(open, derived), o)
            exits.push({ variant, label, seed, values: [m.bpb, m.blocks, m.flops / 1e6, m.tokensPerSecond, m.genBlocks] })
          }
        }),
      )
    }
    return [
      "Every other block kept (blocks 0, 2, 4, …), evaluated without retraining:",
      "",
      table(["variant", "blocks", "seeds", "val bpb (all blocks)", "val bpb (every other)", "MFLOP/token (all)", "MFLOP/token (every other)"], pruned, [4, 4, 3, 3]),
      "",
      `Early exit (evaluation: val bpb, blocks and MFLOP per token; generation of ${o.generate} tokens with the KV cache: tokens/s and blocks per position):`,
      "",
      table(["variant", "exit", "seeds", "val bpb", "blocks/token", "MFLOP/token", "gen tokens/s", "gen blocks/token"], exits, [4, 2, 3, 1, 2]),
    ].join("\n")
  })
