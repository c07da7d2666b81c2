import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Console, Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { printSpec } from "../../dsl/print.js"
import { chooseBackend } from "../backend/select.js"
import { loadRunData } from "../experiment/data.js"
import { isVariantRecord, withTokenizerVocab } from "../experiment/define.js"
import { expandRuns, listExperiments, loadExperiment } from "../experiment/load.js"
import { trainSources } from "../experiment/prerequisites.js"
import { describeWarmStart } from "../experiment/warm-start.js"
import { describeObjective } from "../objective/spec.js"
import { repoRoot } from "../io/paths.js"
import { resultOf, resultsTable } from "../report/results.js"
import { ProgressSink } from "../report/progress.js"
import { type Summary, trainRun } from "../train/run.js"
import { join, resolve } from "node:path"
import { failWith } from "./fail.js"

/** `npm run exp <name | spec.json> -- [flags]`: trains every run an experiment asks for. */
const listAll = Effect.gen(function* () {
  for (const name of listExperiments()) {
    const loaded = yield* loadExperiment(name).pipe(Effect.option)
    const description = Option.isSome(loaded) ? loaded.value.experiment?.description ?? "" : "(failed to load)"
    yield* Console.log(`${name.padEnd(16)} ${description}`)
  }
})

const command = Command.make(
  "exp",
  {
    target: Argument.String("experiment").pipe(Argument.withDescription("an experiment name in experiments/, or a run's spec.json"), Argument.optional),
    list: Flag.Boolean("list").pipe(Flag.withDescription("list the experiments"), Flag.withDefault(false)),
    steps: Flag.Int("steps").pipe(Flag.withDescription("train for N optimiser steps (overrides the budget)"), Flag.optional),
    tokens: Flag.Int("tokens").pipe(Flag.withDescription("train on N tokens (overrides the budget)"), Flag.optional),
    seed: Flag.Int("seed").pipe(Flag.withDescription("run only this seed"), Flag.optional),
    variant: Flag.String("variant").pipe(Flag.withDescription("run only this variant"), Flag.optional),
    out: Flag.String("out").pipe(Flag.withDescription("run directory (default runs/<experiment>)"), Flag.optional),
    fresh: Flag.Boolean("fresh").pipe(Flag.withDescription("ignore an existing checkpoint and start over"), Flag.withDefault(false)),
    checkpointEvery: Flag.Int("checkpoint-every").pipe(Flag.withDescription("checkpoint every N steps"), Flag.optional),
    backend: Flag.String("backend").pipe(Flag.withDescription("force a backend: native, cpu, or tensorflow (when @tensorflow/tfjs-node is installed)"), Flag.optional),
    print: Flag.Boolean("print").pipe(Flag.withDescription("print the model trees and exit"), Flag.withDefault(false)),
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
      const loaded = yield* loadExperiment(target)
      const runs = yield* expandRuns(loaded, overrides)
      if (a.print) {
        for (const r of runs) {
          const extras = [...(r.objective ? [`objective: ${describeObjective(r.objective)}`] : []), ...(r.init ? [`init: ${describeWarmStart(r.init)}`] : [])]
          yield* Console.log(`${r.variant} (seed ${r.seed})\n${[...extras, printSpec(r.model)].join("\n")}\n`)
        }
        return
      }
      const manyVariants = loaded.experiment ? isVariantRecord(loaded.experiment.models) : false
      const manySeeds = new Set(runs.map((r) => r.seed)).size > 1 || (loaded.experiment?.seeds.length ?? 1) > 1
      const base = Option.isSome(a.out) ? resolve(a.out.value) : join(repoRoot(), "runs", loaded.name)
      const backend = yield* chooseBackend(Option.getOrUndefined(a.backend))
      yield* Console.error(`backend: ${backend.name} (${backend.detail})`)
      const resume = ["npm run exp", target, "--", ...process.argv.slice(3).filter((x) => x !== "--fresh" && x !== target)].join(" ")
      // Teachers and warm-start sources: checked against these runs, trained first when missing.
      yield* trainSources(runs, { backend, resumeCommand: resume })
      const data = yield* loadRunData(runs[0]!.training.data)
      const summaries: Summary[] = []
      yield* Console.error(`tokenizer: ${data.tokenizer.name}`)
      for (const requested of runs) {
        const run = loaded.replay ? requested : withTokenizerVocab(requested, data.tokenizer.vocabSize)
        const out = join(base, ...(manyVariants ? [run.variant] : []), ...(manySeeds ? [`seed${run.seed}`] : []))
        yield* Console.error(`\n${run.experiment}/${run.variant} seed ${run.seed} → ${out}`)
        const summary = yield* Effect.scoped(trainRun(run, data, { out, fresh: a.fresh, backend, resumeCommand: resume }))
        summaries.push(summary)
        yield* Console.error(`val loss ${summary.valLoss.toFixed(4)}, val bpb ${summary.valBpb.toFixed(4)}\nsample: ${summary.sample}`)
      }
      yield* Console.log(resultsTable(summaries.map(resultOf)))
    }).pipe(failWith),
).pipe(Command.withDescription("Train the runs of an experiment (variants × seeds), resuming from checkpoints"))

Command.run(command, { version: "0.1.0" }).pipe(
  Effect.provide(NodeServices.layer),
  Effect.provide(ProgressSink.stderr),
  NodeRuntime.runMain({ disableErrorReporting: true }),
)
