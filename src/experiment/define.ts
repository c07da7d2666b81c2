import { Schema } from "effect"
import type { DecoderSpec } from "../../dsl/nodes.js"
import { NonNegativeInt, PositiveInt } from "../../dsl/fields.js"
import { type Budget, BudgetSchema } from "./budget.js"
import type { PruneRecord, PruneVariant } from "./prune/declare.js"
import { type Objective, ObjectiveSchema } from "./objective/spec.js"
import { type OptimizerConfig, OptimizerSchema } from "./optimizer/spec.js"
import { RunLabel, RunName, Seed } from "./names.js"
import type { Variant } from "./variant.js"
import { type WarmStart, WarmStartSchema } from "./warm-start/index.js"

/**
 * What an experiment file exports: the model(s), data, budget, optimiser and intervals. Every
 * field except the models is plain JSON with a Schema; the models are DSL specs. A run of
 * one variant and one seed is a `RunSpec`, saved as the run's spec.json, from which the run
 * can be replayed exactly.
 */
export const DataSchema = Schema.Struct({
  source: Schema.Literal("tinystories"),
  /**
   * `bpe`: a byte-level BPE of this vocabulary size (special token included), trained on the
   * train split; `run`: the tokenizer of that run directory (inside the runs folder unless
   * absolute), e.g. an imported model's, so a student shares its teacher's vocabulary.
   */
  tokenizer: Schema.Union([Schema.Struct({ bpe: Schema.Int.check(Schema.isGreaterThanOrEqualTo(257)) }), Schema.Struct({ run: Schema.NonEmptyString })]),
  /** Also train on train-extra.txt (TinyStories V2, GPT-4 only). */
  extra: Schema.Boolean,
  /**
   * Hold the last `stories` stories of train.txt out of training (and of the tokenizer's
   * training); the run's evaluations use them instead of valid.txt. Absent: valid.txt.
   */
  tune: Schema.optionalKey(Schema.Struct({ stories: PositiveInt })),
})
export type DataConfig = typeof DataSchema.Type

export const SampleSchema = Schema.Struct({
  prompt: Schema.String,
  tokens: PositiveInt,
  temperature: Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0)),
  topK: NonNegativeInt,
  topP: Schema.Finite.check(Schema.isBetween({ minimum: 0, maximum: 1, exclusiveMinimum: true })),
})
export type SampleConfig = typeof SampleSchema.Type

/** Everything that shapes one run except the model; shared by all variants and seeds. */
export const TrainingSchema = Schema.Struct({
  data: DataSchema,
  budget: BudgetSchema,
  /** Sequences per micro-batch. */
  batch: PositiveInt,
  /** Micro-batches per optimiser step. */
  accumulate: PositiveInt,
  optimizer: OptimizerSchema,
  /** `lengths`: also evaluate at these sequence lengths after training (length generalisation). */
  eval: Schema.Struct({ every: PositiveInt, tokens: PositiveInt, lengths: Schema.optionalKey(Schema.Array(PositiveInt)) }),
  checkpoint: Schema.Struct({ every: PositiveInt }),
  sample: SampleSchema,
})
export type TrainingConfig = typeof TrainingSchema.Type

/** A variant: a model trained from scratch, or a trained run pruned (src/experiment/prune/declare.ts). */
export type VariantModel = DecoderSpec | PruneVariant | Variant

export interface Experiment {
  readonly description: string
  /** One model, or named variants (e.g. from `sweep`; `variant(model, { objective, init })` for more than a model, `prune(...)` for a pruned run). */
  readonly models: VariantModel | Readonly<Record<string, VariantModel>>
  readonly training: TrainingConfig
  /** What every variant minimises unless it says otherwise; absent: cross-entropy. */
  readonly objective?: Objective
  readonly seeds: ReadonlyArray<number>
}

export const tinystories = (o: { tokenizer: DataConfig["tokenizer"]; extra?: boolean; tune?: { stories: number } }): DataConfig => ({
  source: "tinystories",
  tokenizer: o.tokenizer,
  extra: o.extra ?? false,
  ...(o.tune === undefined ? {} : { tune: o.tune }),
})

/** The text a run's evaluations use, as its summary records it. */
export const evalTextOf = (data: DataConfig): string => (data.tune === undefined ? "valid" : `tune (last ${data.tune.stories} train stories)`)

/** What a run's log lines call its evaluation figures: "val" on valid.txt, "tune" on held-out training stories. */
export const evalLabel = (data: DataConfig): string => (data.tune === undefined ? "val" : "tune")


export interface ExperimentOptions {
  readonly description: string
  readonly models: Experiment["models"]
  readonly data: DataConfig
  readonly budget: Budget
  readonly optimizer: OptimizerConfig
  readonly objective?: Objective
  readonly batch?: number
  readonly accumulate?: number
  readonly eval?: { readonly every?: number; readonly tokens?: number; readonly lengths?: ReadonlyArray<number> }
  readonly checkpoint?: { readonly every?: number }
  readonly sample?: Partial<SampleConfig>
  readonly seeds?: ReadonlyArray<number>
}

export const experiment = (o: ExperimentOptions): Experiment => ({
  description: o.description,
  models: o.models,
  ...(o.objective ? { objective: o.objective } : {}),
  seeds: o.seeds ?? [1],
  training: {
    data: o.data,
    budget: o.budget,
    batch: o.batch ?? 16,
    accumulate: o.accumulate ?? 1,
    optimizer: o.optimizer,
    eval: { every: o.eval?.every ?? 500, tokens: o.eval?.tokens ?? 65_536, lengths: o.eval?.lengths ?? [] },
    checkpoint: { every: o.checkpoint?.every ?? 500 },
    sample: {
      prompt: o.sample?.prompt ?? "Once upon a time",
      tokens: o.sample?.tokens ?? 200,
      temperature: o.sample?.temperature ?? 0.8,
      topK: o.sample?.topK ?? 40,
      topP: o.sample?.topP ?? 0.95,
    },
  },
})

/** One variant at one seed: the content of a run's spec.json. */
export const RunSpecSchema = Schema.Struct({
  format: Schema.Literal(1),
  experiment: RunName,
  variant: RunLabel,
  seed: Seed,
  /** Decoded separately with `decodeSpec`, whose errors name the path inside the model. */
  model: Schema.Unknown,
  training: TrainingSchema,
  /** A pruned run's source and method, decoded with `decodePruneRecord`. */
  prune: Schema.optionalKey(Schema.Unknown),
  /** Absent: cross-entropy, so the spec.json files written before objectives replay unchanged. */
  objective: Schema.optionalKey(ObjectiveSchema),
  init: Schema.optionalKey(WarmStartSchema),
})
export interface RunSpec {
  readonly format: 1
  readonly experiment: string
  readonly variant: string
  readonly seed: number
  readonly model: DecoderSpec
  readonly training: TrainingConfig
  /** Present for a pruned run; its model is then the pruned one (the source's until pruned). */
  readonly prune?: PruneRecord
  readonly objective?: Objective
  readonly init?: WarmStart
}

export const isVariantRecord = (models: Experiment["models"]): models is Readonly<Record<string, VariantModel>> =>
  !("op" in models && ["decoder", "prune", "variant"].includes((models as { op?: unknown }).op as string))

/**
 * An experiment's model names its vocabulary by the BPE size it asks for (`vocab: 4096` with
 * `tokenizer: { bpe: 4096 }`). The tokenizer counts like Hugging Face's trainer (merges, the
 * bytes seen in training, specials) and then adds the unseen bytes so no input is lost, so it
 * has a few more ids; the run's model, and its spec.json, use that real size.
 */
export const withTokenizerVocab = (run: RunSpec, vocabSize: number): RunSpec =>
  run.model.vocab === vocabSize ? run : { ...run, model: { ...run.model, vocab: vocabSize } }

/** The optimiser steps a run's budget comes to. */
export const totalSteps = (run: RunSpec): number => {
  const b = run.training.budget
  if ("steps" in b) return b.steps
  return Math.max(1, Math.ceil(b.tokens / (run.training.batch * run.training.accumulate * run.model.context)))
}
