import { existsSync, readdirSync, readFileSync } from "node:fs"
import { basename, dirname, extname, join, resolve } from "node:path"
import { pathToFileURL } from "node:url"
import { Data, Effect, Result, Schema, SchemaIssue } from "effect"
import { decodeSpec, formatPath } from "../../dsl/decode.js"
import { diffSpecs, formatDiff } from "../../dsl/diff.js"
import { canonicalJson } from "../../dsl/hash.js"
import type { DecoderSpec } from "../../dsl/nodes.js"
import { repoRoot } from "../io/paths.js"
import { runsFolder } from "../io/paths.js"
import { isExplicit, type Objective, objectiveProblems, ObjectiveSchema } from "./objective/spec.js"
import { decodePruneRecord, decodePruneVariant, isPruneVariant, type PruneRecord, type PruneVariant } from "./prune/declare.js"
import { methodModule } from "./prune/methods/index.js"
import { IMPORTS, nameProblem, seedProblem } from "./names.js"
import { type Experiment, isVariantRecord, type RunSpec, RunSpecSchema, type TrainingConfig, TrainingSchema } from "./define.js"
import { withCap } from "./budget.js"
import { recordedDir, resolveRecordedDir, runPath } from "./run-path.js"
import { variantParts, VariantTrainingSchema } from "./variant.js"
import { type WarmStart, warmStartProblems, WarmStartSchema } from "./warm-start/index.js"

/**
 * Finding an experiment (by name in experiments/, or a saved spec.json) and turning it into
 * the list of runs it asks for, with every check done before any data is read.
 */
export class ExperimentError extends Data.TaggedError("ExperimentError")<{ readonly source: string; readonly problem: string }> {
  override get message(): string {
    return `${this.source}: ${this.problem}`
  }
}

export const experimentsDir = join(repoRoot(), "experiments")

export interface Loaded {
  readonly name: string
  readonly source: string
  /** Present for an experiment file; a spec.json replays exactly one run instead. */
  readonly experiment?: Experiment
  readonly replay?: RunSpec
}

const formatter = SchemaIssue.makeFormatterStandardSchemaV1()

const schemaProblems = <T>(schema: Schema.Codec<T, any>, input: unknown, prefix: ReadonlyArray<string | number>): { value?: T; problems: string[] } => {
  const r = Schema.decodeUnknownResult(schema)(input, { errors: "all", onExcessProperty: "error" })
  if (Result.isSuccess(r)) return { value: r.success, problems: [] }
  return {
    problems: formatter(r.failure.issue).issues.map(
      (i) => `at ${formatPath([...prefix, ...(i.path ?? []).map((k) => (typeof k === "number" ? k : String(k)))])}: ${i.message}`,
    ),
  }
}

const modelProblems = (model: unknown, prefix: ReadonlyArray<string | number>): { value?: DecoderSpec; problems: string[] } => {
  const r = decodeSpec(model)
  if (Result.isSuccess(r)) return { value: r.success, problems: [] }
  return { problems: r.failure.issues.map((i) => `at ${formatPath([...prefix, ...i.path])}: ${i.message}`) }
}

/**
 * A run's objective and warm start, decoded and checked against its model. Cross-entropy is
 * left out: it is the default, and absent it keeps the spec hashes of runs made before objectives.
 */
const extrasProblems = (
  parts: { objective?: unknown; init?: unknown },
  model: DecoderSpec | undefined,
  at: { objective: ReadonlyArray<string | number>; init: ReadonlyArray<string | number> },
): { value: { objective?: Objective; init?: WarmStart }; problems: string[] } => {
  const objective = parts.objective === undefined ? undefined : schemaProblems(ObjectiveSchema, parts.objective, at.objective)
  const init = parts.init === undefined ? undefined : schemaProblems(WarmStartSchema, parts.init, at.init)
  const problems = [
    ...(objective?.problems ?? []),
    ...(init?.problems ?? []),
    ...(objective?.value && model ? objectiveProblems(objective.value, model, at.objective) : []),
    ...(init?.value && model ? warmStartProblems(init.value, model, at.init) : []),
  ]
  const value = {
    ...(isExplicit(objective?.value) ? { objective: objective.value } : {}),
    ...(init?.value ? { init: init.value } : {}),
  }
  return { value, problems }
}

export const listExperiments = (): string[] =>
  existsSync(experimentsDir)
    ? readdirSync(experimentsDir).filter((f) => f.endsWith(".ts")).map((f) => basename(f, ".ts")).sort()
    : []

export const loadExperiment = (target: string): Effect.Effect<Loaded, ExperimentError> =>
  Effect.gen(function* () {
    if (extname(target) === ".json") {
      const source = resolve(target)
      const raw = yield* Effect.try({
        try: () => JSON.parse(readFileSync(source, "utf8")) as unknown,
        catch: (e) => new ExperimentError({ source, problem: `cannot read a run spec: ${(e as Error).message}` }),
      })
      const top = schemaProblems(RunSpecSchema, raw, [])
      const model = modelProblems((raw as { model?: unknown })?.model, ["model"])
      const prune = top.value?.prune === undefined ? undefined : decodePruneRecord(top.value.prune, ["prune"])
      const pruneProblems = [
        ...(prune?.issues ?? []).map((i) => `at ${formatPath(i.path)}: ${i.message}`),
        ...(prune?.value && model.value ? [unprunedModelProblem(prune.value, model.value)].filter((p) => p !== undefined) : []),
      ]
      const extras = extrasProblems(top.value ?? {}, model.value, { objective: ["objective"], init: ["init"] })
      const problems = [...top.problems, ...(top.value ? [...model.problems, ...pruneProblems, ...extras.problems] : [])]
      if (problems.length > 0 || !top.value || !model.value) return yield* new ExperimentError({ source, problem: `invalid run spec\n${problems.join("\n")}` })
      const { prune: _prune, objective: _objective, init: _init, ...plain } = top.value
      const replay: RunSpec = { ...plain, model: model.value, ...(prune?.value === undefined ? {} : { prune: prune.value }), ...extras.value }
      return { name: replay.experiment, source, replay }
    }
    // A path to an experiment file (e.g. ./mine.ts) or a name in experiments/.
    const byPath = extname(target) === ".ts"
    const source = byPath ? resolve(target) : join(experimentsDir, `${target}.ts`)
    if (byPath && !existsSync(source)) return yield* new ExperimentError({ source, problem: "no such experiment file" })
    const name = byPath ? basename(target, ".ts") : target
    // The name is the runs' directory: a file whose name cannot be one is refused before it is loaded.
    const badName = nameProblem(name)
    if (badName !== undefined && (byPath || existsSync(source))) return yield* new ExperimentError({ source, problem: `the experiment's name ${badName}${byPath ? " (rename the file)" : ""}` })
    if (!byPath && (badName !== undefined || !existsSync(source))) {
      const known = listExperiments()
      return yield* new ExperimentError({
        source: target,
        problem: `no such experiment; expected one of ${known.join(", ") || "(none)"} in experiments/, or a path to a run's spec.json`,
      })
    }
    const module = yield* Effect.tryPromise({
      try: () => import(pathToFileURL(source).href) as Promise<{ default?: Experiment }>,
      catch: (e) => new ExperimentError({ source, problem: `failed to load: ${e instanceof Error ? e.message : String(e)}` }),
    })
    const exp = module.default
    if (exp === undefined || typeof exp !== "object" || !("models" in exp) || !("training" in exp)) {
      return yield* new ExperimentError({ source, problem: "expected `export default experiment({...})`" })
    }
    return { name, source, experiment: exp }
  })

export interface Overrides {
  readonly steps?: number
  readonly tokens?: number
  readonly seed?: number
  readonly variant?: string
  readonly checkpointEvery?: number
  /** Where run directories live (default runsFolder()): pruning looks for its sources there. */
  readonly runs?: string
}

const withOverrides = (t: TrainingConfig, o: Overrides): TrainingConfig => ({
  ...t,
  budget: o.steps !== undefined ? withCap(t.budget, { steps: o.steps }) : o.tokens !== undefined ? withCap(t.budget, { tokens: o.tokens }) : t.budget,
  checkpoint: o.checkpointEvery !== undefined ? { every: o.checkpointEvery } : t.checkpoint,
})

/** The variants `--variant` may name (a spec.json's one); undefined when the experiment has none or malformed models, which expandRuns reports. */
export const variantNames = (loaded: Loaded): ReadonlyArray<string> | undefined => {
  if (loaded.replay) return [loaded.replay.variant]
  const models = loaded.experiment!.models
  if (typeof models !== "object" || models === null || Array.isArray(models)) return undefined
  const names = isVariantRecord(models) ? Object.keys(models) : ["base"]
  return names.length > 0 ? names : undefined
}

/**
 * The runs an experiment asks for (variants × seeds), each checked in full. `chain` lists the
 * experiments whose pruning sources led here, so a cycle of sources is refused.
 */
export const expandRuns = (loaded: Loaded, o: Overrides, chain: ReadonlyArray<string> = []): Effect.Effect<ReadonlyArray<RunSpec>, ExperimentError> =>
  Effect.gen(function* () {
    const fail = (problems: ReadonlyArray<string>) => new ExperimentError({ source: loaded.source, problem: `invalid experiment\n${problems.join("\n")}` })
    if (loaded.replay) {
      const r = loaded.replay
      if (o.variant !== undefined && o.variant !== r.variant) return yield* fail([`--variant ${o.variant}: this spec.json is variant "${r.variant}"`])
      return [{ ...r, seed: o.seed ?? r.seed, training: withOverrides(r.training, o) }]
    }
    const exp = loaded.experiment!
    // An experiment file is code: its shape is checked before anything reads into it.
    const shape = [
      ...(typeof exp.models !== "object" || exp.models === null || Array.isArray(exp.models) ? [`at ["models"]: expected a decoder spec or a record of named variants, got ${JSON.stringify(exp.models)}`] : []),
      ...(typeof exp.training !== "object" || exp.training === null ? [`at ["training"]: expected the training settings, got ${JSON.stringify(exp.training)}`] : []),
      ...(!Array.isArray(exp.seeds) ? [`at ["seeds"]: expected a non-empty list of integers, got ${JSON.stringify(exp.seeds)}`] : []),
    ]
    if (shape.length > 0) return yield* fail(shape)
    const variants: Record<string, unknown> = isVariantRecord(exp.models) ? { ...exp.models } : { base: exp.models }
    const names = Object.keys(variants)
    if (names.length === 0) return yield* fail([`at ["models"]: no models; expected a decoder spec or a record of named variants`])
    // Variant names and seeds become directories: checked before anything else reads them.
    const badNames = [
      ...names.flatMap((n) => (isVariantRecord(exp.models) ? [nameProblem(n)].filter((p) => p !== undefined).map((p) => `at ${formatPath(["models", n])}: the variant's name ${p}`) : [])),
      ...(Array.isArray(exp.seeds) ? exp.seeds : []).flatMap((s, i) => [seedProblem(s)].filter((p) => p !== undefined).map((p) => `at ${formatPath(["seeds", i])}: ${p}`)),
    ]
    if (badNames.length > 0) return yield* fail(badNames)
    if (o.variant !== undefined && !names.includes(o.variant)) return yield* fail([`--variant ${o.variant}: no such variant; expected one of ${names.join(", ")}`])
    const training = schemaProblems(TrainingSchema, withOverrides(exp.training, o), ["training"])
    const at = (n: string): Array<string | number> => (isVariantRecord(exp.models) ? ["models", n] : ["models"])
    const pruned = names.filter((n) => isPruneVariant(variants[n]))
    // A pruned variant's model and training come from its source; the others may carry an objective or a warm start.
    const parts = names.map((n) => variantParts(variants[n], exp.objective))
    const models = names.map((n, i) => (pruned.includes(n) ? { problems: [] } : modelProblems(parts[i]!.model, parts[i]!.model === variants[n] ? at(n) : [...at(n), "model"])))
    const extras = names.map((n, i) =>
      pruned.includes(n)
        ? { value: {}, problems: [] }
        : extrasProblems(parts[i]!, models[i]!.value, { objective: parts[i]!.objectiveAt === "variant" ? [...at(n), "objective"] : ["objective"], init: [...at(n), "init"] }),
    )
    // A variant's own optimiser, budget or batch, over the experiment's (and under the command line's caps).
    const trainings = names.map((n, i) => {
      const own = parts[i]!.training === undefined ? undefined : schemaProblems(VariantTrainingSchema, parts[i]!.training, [...at(n), "training"])
      return { problems: own?.problems ?? [], value: own?.value === undefined || !training.value ? training.value : withOverrides({ ...training.value, ...own.value }, o) }
    })
    const seeds = o.seed !== undefined ? [o.seed] : exp.seeds
    const chosen = o.variant !== undefined ? [o.variant] : names
    const prunes = new Map<string, ReadonlyArray<RunSpec>>()
    const pruneProblems: string[] = []
    for (const n of pruned.filter((n) => chosen.includes(n))) {
      const decoded = decodePruneVariant(variants[n], at(n))
      pruneProblems.push(...decoded.issues.map((i) => `at ${formatPath(i.path)}: ${i.message}`))
      if (decoded.value === undefined || !training.value) continue
      const e = yield* expandPrune({
        experiment: loaded.name,
        variant: n,
        declared: decoded.value as PruneVariant,
        training: training.value,
        seeds,
        overrides: o,
        runs: o.runs ?? runsFolder(),
        path: at(n),
        chain,
      })
      pruneProblems.push(...e.problems)
      prunes.set(n, e.runs)
    }
    const problems = [
      ...training.problems,
      ...models.flatMap((m) => m.problems),
      ...pruneProblems,
      ...extras.flatMap((e) => e.problems),
      ...trainings.flatMap((t) => t.problems),
      ...(seeds.length === 0 || !seeds.every(Number.isInteger) ? [`at ["seeds"]: expected a non-empty list of integers`] : []),
    ]
    const tokenizer = exp.training.data?.tokenizer
    // A run's tokenizer is read when the run starts, and the model takes its vocabulary then.
    const vocab = tokenizer !== undefined && "bpe" in tokenizer ? tokenizer.bpe : undefined
    models.forEach((m, i) => {
      if (vocab !== undefined && "value" in m && m.value && m.value.vocab !== vocab) problems.push(`at ${formatPath(["models", names[i]!, "vocab"])}: ${m.value.vocab} differs from the tokenizer's vocabulary ${vocab} (training.data.tokenizer.bpe)`)
    })
    if (problems.length > 0 || !training.value) return yield* fail(problems)
    return chosen.flatMap((variant) =>
      prunes.get(variant) ??
      seeds.map((seed): RunSpec => ({
        format: 1,
        experiment: loaded.name,
        variant,
        seed,
        model: (models[names.indexOf(variant)] as { value: DecoderSpec }).value,
        training: trainings[names.indexOf(variant)]!.value!,
        ...extras[names.indexOf(variant)]!.value,
      })),
    )
  })

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
/** The model a run directory's spec.json records, when it has a readable one (an unreadable one is reported when the run is opened). */
const recordedModel = (dir: string): DecoderSpec | undefined => {
  const file = join(dir, "spec.json")
  if (!existsSync(file)) return undefined
  try {
    const r = decodeSpec((JSON.parse(readFileSync(file, "utf8")) as { model?: unknown }).model)
    return Result.isSuccess(r) ? r.success : undefined
  } catch {
    return undefined
  }
}

const sourceModel = (dir: string, declared: RunSpec): DecoderSpec | undefined =>
  recordedModel(dir) ?? (declared.prune !== undefined && methodModule(declared.prune.method).structure !== "weights" ? undefined : declared.model)

/**
 * A spec.json's pruned run not yet pruned (its source's weights unrecorded) takes its model
 * from the source; one that declares another model would silently train a different one.
 */
const unprunedModelProblem = (prune: PruneRecord, model: DecoderSpec): string | undefined => {
  if (prune.source.checkpoint !== undefined) return undefined
  const source = recordedModel(resolveRecordedDir(prune.source.dir))
  if (source === undefined || canonicalJson(source) === canonicalJson(model)) return undefined
  return `at ["model"]: a run that prunes ${prune.source.dir} starts from that run's model, and this is another (pruning decides the model; give the source's):\n${formatDiff(diffSpecs(source, model))}`
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
    // A source named by its run's spec.json is that run directory (its spec says which run it is);
    // "imports/<name>" is an imported run in the runs folder (no experiment can have that name).
    const imported = ref.experiment.split("/")[0] === IMPORTS
    const byRun = extname(ref.experiment) === ".json" || imported
    const loaded = yield* Effect.result(loadExperiment(imported ? join(args.runs, ref.experiment, "spec.json") : byRun ? resolve(repoRoot(), ref.experiment) : ref.experiment))
    if (Result.isFailure(loaded)) return { runs: [], problems: [at(["source", "experiment"], byRun ? loaded.failure.message : loaded.failure.problem)] }
    const finetune = p.finetune
    // Cross-entropy is left out, as for any run: absent, it keeps spec hashes unchanged.
    const objective = isExplicit(finetune?.objective) ? finetune?.objective : undefined
    const o = args.overrides
    const training: TrainingConfig = {
      ...args.training,
      // Overrides shorten a fine-tune; a one-shot pruning stays one-shot.
      budget: finetune === undefined ? { steps: 0 } : o.steps !== undefined ? withCap(finetune.budget, { steps: o.steps }) : o.tokens !== undefined ? withCap(finetune.budget, { tokens: o.tokens }) : finetune.budget,
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

/** The experiment's variants in the order it declares them; none when the target is not an experiment. */
export const variantOrder = (target: string): Effect.Effect<string[]> =>
  loadExperiment(target).pipe(
    Effect.flatMap((loaded) => expandRuns(loaded, {})),
    Effect.map((runs) => [...new Set(runs.map((r) => r.variant))]),
    Effect.orElseSucceed((): string[] => []),
  )
