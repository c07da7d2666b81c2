import { existsSync, readFileSync } from "node:fs"
import { dirname, extname, join, resolve } from "node:path"
import { Effect, Result } from "effect"
import { decodeSpec, formatPath } from "../../dsl/decode.js"
import { canonicalJson } from "../../dsl/hash.js"
import type { DecoderSpec } from "../../dsl/nodes.js"
import { isVariantRecord, type RunSpec, type TrainingConfig } from "../experiment/define.js"
import { expandRuns, loadExperiment, type Overrides } from "../experiment/load.js"
import { recordedDir, runPath } from "../experiment/run-path.js"
import { repoRoot } from "../io/paths.js"
import { isExplicit, objectiveProblems } from "../objective/spec.js"
import type { PruneVariant } from "./declare.js"
import { methodModule } from "./methods/index.js"

/**
 * A `prune(...)` variant as runs, one per seed of the experiment, each checked before any
 * work: the source experiment, variant and seed exist (or the source is a run directory named
 * by its spec.json, `runs/x/spec.json` relative to the repository); its data is this experiment's; the
 * method suits the source's model (the one its spec.json records when it has been trained,
 * otherwise the one its experiment declares). A run's model is the source's until pruned.
 */
export interface PruneExpansion {
  readonly runs: ReadonlyArray<RunSpec>
  readonly problems: ReadonlyArray<string>
}

/** The model a source run has, or undefined when it is a structured pruning not yet made (its size is not known). */
const sourceModel = (dir: string, declared: RunSpec): DecoderSpec | undefined => {
  const file = join(dir, "spec.json")
  if (existsSync(file)) {
    try {
      const r = decodeSpec((JSON.parse(readFileSync(file, "utf8")) as { model?: unknown }).model)
      if (Result.isSuccess(r)) return r.success
    } catch {
      // An unreadable spec.json is reported when the source is opened.
    }
  }
  return declared.prune !== undefined && methodModule(declared.prune.method).structure !== "weights" ? undefined : declared.model
}

export const expandPrune = (args: {
  readonly experiment: string
  readonly variant: string
  readonly declared: PruneVariant
  readonly training: TrainingConfig
  readonly seeds: ReadonlyArray<number>
  readonly overrides: Overrides
  readonly runs: string
  readonly path: ReadonlyArray<string | number>
  readonly chain: ReadonlyArray<string>
}): Effect.Effect<PruneExpansion> =>
  Effect.gen(function* () {
    const { declared: p, path } = args
    const at = (sub: ReadonlyArray<string | number>, message: string) => `at ${formatPath([...path, ...sub])}: ${message}`
    const ref = p.source
    if ([...args.chain, args.experiment].includes(ref.experiment)) {
      return { runs: [], problems: [at(["source", "experiment"], `pruning sources form a cycle: ${[...args.chain, args.experiment, ref.experiment].join(" → ")}`)] }
    }
    // A source named by its run's spec.json is that run directory (its spec says which run it is).
    const byRun = extname(ref.experiment) === ".json"
    const loaded = yield* Effect.result(loadExperiment(byRun ? resolve(repoRoot(), ref.experiment) : ref.experiment))
    if (Result.isFailure(loaded)) return { runs: [], problems: [at(["source", "experiment"], byRun ? loaded.failure.message : loaded.failure.problem)] }
    const finetune = p.finetune
    // Cross-entropy is left out, as for any run: absent, it keeps spec hashes unchanged.
    const objective = isExplicit(finetune?.objective) ? finetune?.objective : undefined
    const o = args.overrides
    const training: TrainingConfig = {
      ...args.training,
      // Overrides shorten a fine-tune; a one-shot pruning stays one-shot.
      budget: finetune === undefined ? { steps: 0 } : o.steps !== undefined ? { steps: o.steps } : o.tokens !== undefined ? { tokens: o.tokens } : finetune.budget,
      optimizer: finetune?.optimizer ?? args.training.optimizer,
    }
    const problems: string[] = []
    const runs: RunSpec[] = []
    /** The pruned run of `seed` from the source run `declaredSource` in `dir`, or its problems. */
    const fromSource = (seed: number, declaredSource: RunSpec, dir: string, record: { readonly experiment: string; readonly variant: string; readonly seed: number }) => {
      if (canonicalJson(declaredSource.training.data) !== canonicalJson(args.training.data)) {
        problems.push(
          at(["source"], `${record.experiment}/${record.variant} is trained on ${canonicalJson(declaredSource.training.data)} but this experiment's data is ${canonicalJson(args.training.data)}; a pruned model keeps its source's tokenizer`),
        )
        return
      }
      const model = sourceModel(dir, declaredSource)
      if (model !== undefined) {
        problems.push(...methodModule(p.method).check(p.method, model, finetune !== undefined).map((i) => at(["method", ...i.path], i.message)))
      }
      // Pruning keeps the blocks and the policy, so the source's are the pruned model's.
      if (objective !== undefined) problems.push(...objectiveProblems(objective, model ?? declaredSource.model, [...path, "finetune", "objective"]))
      runs.push({
        format: 1,
        experiment: args.experiment,
        variant: args.variant,
        seed,
        model: model ?? declaredSource.model,
        training,
        prune: { source: { ...record, dir: recordedDir(dir) }, method: p.method },
        ...(objective === undefined ? {} : { objective }),
      })
    }
    const replay = loaded.success.replay
    if (replay !== undefined) {
      const file = loaded.success.source
      const other = [
        ...(ref.variant !== undefined && ref.variant !== replay.variant ? [at(["source", "variant"], `${file} is variant "${replay.variant}", not "${ref.variant}"`)] : []),
        ...(ref.seed !== undefined && ref.seed !== replay.seed ? [at(["source", "seed"], `${file} is seed ${replay.seed}, not ${ref.seed}`)] : []),
      ]
      if (other.length > 0) return { runs: [], problems: other }
      for (const seed of args.seeds) fromSource(seed, replay, dirname(file), { experiment: replay.experiment, variant: replay.variant, seed: replay.seed })
      return { runs, problems: [...new Set(problems)] }
    }
    const source = loaded.success.experiment!
    const variants = isVariantRecord(source.models) ? Object.keys(source.models) : ["base"]
    const variant = ref.variant ?? (variants.length === 1 ? variants[0]! : undefined)
    if (variant === undefined || !variants.includes(variant)) {
      const which = ref.variant === undefined ? `has ${variants.length} variants` : `has no variant "${ref.variant}"`
      return { runs: [], problems: [at(["source", "variant"], `experiment "${ref.experiment}" ${which}; name one of ${variants.join(", ")} with source: { experiment, variant }`)] }
    }
    for (const seed of args.seeds) {
      const sourceSeed = ref.seed ?? (source.seeds.length === 1 ? source.seeds[0]! : seed)
      if (!source.seeds.includes(sourceSeed)) {
        problems.push(at(["source", "seed"], `seed ${sourceSeed} is not among experiment "${ref.experiment}"'s seeds ${source.seeds.join(", ")}; give source: { experiment, seed }`))
        continue
      }
      const expanded = yield* Effect.result(expandRuns(loaded.success, { variant, seed: sourceSeed, runs: args.runs }, [...args.chain, args.experiment]))
      if (Result.isFailure(expanded)) {
        problems.push(at(["source"], expanded.failure.message))
        continue
      }
      fromSource(seed, expanded.success[0]!, runPath(join(args.runs, ref.experiment), source, variant, sourceSeed), { experiment: ref.experiment, variant, seed: sourceSeed })
    }
    return { runs, problems: [...new Set(problems)] }
  })
