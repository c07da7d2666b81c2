import { Console, Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { printSpec } from "../../dsl/print.js"
import { availableMemory } from "../backend/available-memory.js"
import { chooseBackend } from "../backend/select.js"
import { located } from "../errors/unexpected.js"
import { loadRunData } from "../orchestration/data.js"
import { evalLabel, type RunSpec, withTokenizerVocab } from "../experiment/define.js"
import { expandRuns, listExperiments, loadExperiment, variantNames } from "../experiment/load.js"
import { trainSources } from "../orchestration/prerequisites.js"
import { runPath } from "../experiment/run-path.js"
import { parseShard, shardExpected, shardRuns } from "../orchestration/shard.js"
import { describeWarmStart } from "../experiment/warm-start/index.js"
import { codeVersion } from "../io/code-version.js"
import { runsFolder } from "../io/paths.js"
import { describeObjective } from "../experiment/objective/spec.js"
import { describeOptimizer } from "../experiment/optimizer/spec.js"
import { methodModule } from "../experiment/prune/methods/index.js"
import { trainOrPrune } from "../prune/run.js"
import { checkSources } from "../prune/source.js"
import { formatBytes } from "../io/progress.js"
import { resultOf, resultsTable, targetLine } from "../report/results.js"
import { describeBudget } from "../experiment/budget.js"
import { estimateTraining, type MemoryLimit } from "../train/estimate.js"
import { placeProblem } from "../train/target.js"
import type { Summary } from "../experiment/summary.js"
import { RunError, runMemoryProblem } from "../train/run-options.js"
import { dirname, join, resolve } from "node:path"
import { runCommand, UsageError } from "./boundary.js"
import { backendFlag, intFlag, parseBytes, seedRange } from "./flags.js"

/** `npm run exp <name | file.ts | spec.json> -- [flags]`: trains every run an experiment asks for. */

const listAll = Effect.gen(function* () {
  for (const name of listExperiments()) {
    const loaded = yield* loadExperiment(name).pipe(Effect.option)
    const description = Option.isSome(loaded) ? loaded.value.experiment?.description ?? "" : "(failed to load)"
    yield* Console.log(`${name.padEnd(16)} ${description}`)
  }
})

export const command = Command.make(
  "exp",
  {
    target: Argument.String("experiment").pipe(Argument.withDescription("an experiment name in experiments/, an experiment file (.ts), or a run's spec.json"), Argument.optional),
    list: Flag.Boolean("list").pipe(Flag.withDescription("list the experiments"), Flag.withDefault(false)),
    steps: intFlag("steps", { min: 1 }).pipe(Flag.withDescription("train for N optimiser steps (overrides the budget)"), Flag.optional),
    tokens: intFlag("tokens", { min: 1 }).pipe(Flag.withDescription("train on N tokens (overrides the budget)"), Flag.optional),
    seed: intFlag("seed", seedRange).pipe(Flag.withDescription("run only this seed"), Flag.optional),
    variant: Flag.String("variant").pipe(Flag.withDescription("run only this variant"), Flag.optional),
    out: Flag.String("out").pipe(Flag.withDescription("run directory (default runs/<experiment>)"), Flag.optional),
    fresh: Flag.Boolean("fresh").pipe(Flag.withDescription("ignore an existing checkpoint and start over"), Flag.withDefault(false)),
    checkpointEvery: intFlag("checkpoint-every", { min: 1 }).pipe(Flag.withDescription("checkpoint every N steps"), Flag.optional),
    maxMemory: Flag.String("max-memory").pipe(Flag.withDescription("refuse runs whose memory estimate exceeds this (e.g. 8G; default: the memory available)"), Flag.optional),
    backend: backendFlag,
    shard: Flag.String("shard").pipe(
      Flag.filterMap((text) => Option.fromUndefinedOr(parseShard(text)), () => shardExpected),
      Flag.withMetavar("i/n"),
      Flag.withDescription("run only the i-th of n disjoint slices of the runs (i/n, 1 ≤ i ≤ n), e.g. from a SLURM array job"),
      Flag.optional,
    ),
    print: Flag.Boolean("print").pipe(Flag.withDescription("print the model trees and memory estimates, and exit"), Flag.withDefault(false)),
  },
  (a) =>
    Effect.gen(function* () {
      if (a.list || Option.isNone(a.target)) return yield* listAll
      const target = a.target.value
      const overrides = {
        steps: Option.getOrUndefined(a.steps),
        tokens: Option.getOrUndefined(a.tokens),
        seed: Option.getOrUndefined(a.seed),
        variant: Option.getOrUndefined(a.variant),
        checkpointEvery: Option.getOrUndefined(a.checkpointEvery),
      }
      const limit: MemoryLimit = Option.isSome(a.maxMemory)
        ? { bytes: yield* parseBytes("max-memory", a.maxMemory.value), source: `--max-memory ${a.maxMemory.value}` }
        : availableMemory()
      const shard = Option.getOrUndefined(a.shard)
      const loaded = yield* loadExperiment(target)
      const variants = variantNames(loaded)
      if (overrides.variant !== undefined && variants !== undefined && !variants.includes(overrides.variant)) {
        return yield* new UsageError({ message: `--variant ${overrides.variant}: ${loaded.source} has no such variant; expected one of ${variants.join(", ")}` })
      }
      const all = yield* expandRuns(loaded, overrides)
      const runs = shard === undefined ? all : shardRuns(all, shard)
      if (shard !== undefined) yield* Console.error(`shard ${shard.index}/${shard.count}: ${runs.length} of ${all.length} runs`)
      if (runs.length === 0) return
      // The backend first: what a step holds depends on its kernels (fused attention keeps no scores).
      const backend = yield* chooseBackend(Option.getOrUndefined(a.backend))
      // Sizes are checked for every run before the data is prepared or anything is written.
      for (const r of runs) {
        const problem = runMemoryProblem(r, limit)
        if (problem !== undefined) return yield* new RunError({ problem: `${loaded.source}: ${r.variant} (seed ${r.seed}): ${problem}` })
      }
      if (a.print) {
        for (const r of runs) {
          const e = estimateTraining(r.model, r.training)
          const pruning = r.prune === undefined ? "" : `: ${methodModule(r.prune.method).label(r.prune.method)} of ${r.prune.source.dir}, whose model is`
          const extras = [
            `budget: ${describeBudget(r.training.budget, evalLabel(r.training.data))}, batch ${r.training.batch}${r.training.accumulate > 1 ? ` × ${r.training.accumulate}` : ""}`,
            `optimizer: ${describeOptimizer(r.training.optimizer)}`,
            ...(r.objective ? [`objective: ${describeObjective(r.objective)}`] : []),
            ...(r.init ? [`init: ${describeWarmStart(r.init)}`] : []),
          ]
          yield* Console.log(
            `${r.variant} (seed ${r.seed})${pruning}\n${[...extras, printSpec(r.model)].join("\n")}\nmemory: about ${formatBytes(e.totalBytes)} to train at batch ${r.training.batch} × context ${r.model.context} ` +
              `(weights ${formatBytes(e.weightBytes)}, ${e.optimizerState} ${formatBytes(e.optimizerBytes)}, gradients ${formatBytes(e.gradientBytes)}, activations ${formatBytes(e.activationBytes)})\n`,
          )
        }
        return
      }
      yield* checkSources(runs)
      // Directory names follow the whole experiment, not the slice, so shards write where one process would.
      const folder = runsFolder()
      // A replayed spec.json is the run in its own directory: resumed there, or found finished.
      const base = Option.isSome(a.out) ? resolve(a.out.value) : loaded.replay ? dirname(loaded.source) : join(folder, loaded.name)
      const outOf = (run: RunSpec) => runPath(base, loaded.experiment, run.variant, run.seed)
      for (const r of runs) {
        const problem = yield* placeProblem(outOf(r), r, a.fresh)
        if (problem !== undefined) return yield* new RunError({ problem })
      }
      const ledger = { runsFolder: folder, code: yield* codeVersion }
      yield* Console.error(`backend: ${backend.name} (${backend.detail})`)
      const resume = ["npm run exp", target, "--", ...process.argv.slice(3).filter((x) => x !== "--fresh" && x !== target)].join(" ")
      // Teachers, warm-start and pruning sources: checked against these runs, trained first when missing.
      yield* trainSources(runs, { backend, resumeCommand: resume, ledger, memoryLimit: limit })
      const data = yield* loadRunData(runs[0]!.training.data)
      const summaries: Summary[] = []
      yield* Console.error(`tokenizer: ${data.tokenizer.name}`)
      for (const requested of runs) {
        const run = loaded.replay ? requested : withTokenizerVocab(requested, data.tokenizer.vocabSize)
        const out = outOf(run)
        yield* Console.error(`\n${run.experiment}/${run.variant} seed ${run.seed} → ${out}`)
        const summary = yield* Effect.scoped(trainOrPrune(run, data, { out, fresh: a.fresh, backend, resumeCommand: resume, memoryLimit: limit, ledger })).pipe(
          located({ experiment: loaded.source, runDir: out }),
        )
        summaries.push(summary)
        const [loss, bpb] = [summary.valLoss.toFixed(4), summary.valBpb.toFixed(4)]
        const figures = summary.evalText === undefined || summary.evalText === "valid" ? `val loss ${loss}, val bpb ${bpb}` : `loss ${loss}, bpb ${bpb} on ${summary.evalText}`
        yield* Console.error(`${figures}\nsample: ${summary.sample}`)
        if (summary.target !== undefined) yield* Console.error(targetLine(summary.target, summary.evalText))
      }
      yield* Console.log(resultsTable(summaries.map(resultOf)))
    }).pipe(located({ experiment: Option.getOrElse(a.target, () => "(none)") })),
).pipe(Command.withDescription("Train the runs of an experiment (variants × seeds), resuming from checkpoints"))

runCommand(import.meta.url, command)
