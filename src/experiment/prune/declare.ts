import { Result, Schema, SchemaIssue } from "effect"
import type { Issue } from "../../../dsl/kind.js"
import { type Budget, BudgetSchema } from "../budget.js"
import { type OptimizerConfig, OptimizerSchema } from "../optimizer/spec.js"
import { type Objective, ObjectiveSchema } from "../objective/spec.js"
import { RunLabel, RunName, Seed } from "../names.js"
import { type PruneMethod, pruneMethods } from "./methods/index.js"

/**
 * Pruning as an experiment's variant: `prune({ source, method, finetune })` names a trained
 * run (by its experiment, and variant and seed where it has several), a method from the
 * registry and an optional recovery fine-tune. A pruned run's spec.json records the same
 * under `prune`, with the source's directory and identity (spec hash, checkpoint sha256 and
 * step) once it has been pruned, so a replay refuses a source that has changed since.
 */
export interface SourceRef {
  /** An experiment's name, or a trained run's spec.json (runs/x/spec.json: the run directory runs/x). */
  readonly experiment: string
  /** Needed when the source experiment has several variants. */
  readonly variant?: string
  /** Default: the source experiment's only seed, else the pruned run's own seed. */
  readonly seed?: number
}

export interface Finetune {
  readonly budget: Budget
  /** Default: the experiment's optimiser. */
  readonly optimizer?: OptimizerConfig
  /** Default: cross-entropy; `distill({ teacher, ... })` recovers from a teacher (prune-then-distill, as Minitron does). */
  readonly objective?: Objective
}

export interface PruneVariant {
  readonly op: "prune"
  readonly source: SourceRef
  readonly method: PruneMethod
  /** Absent: one-shot (the pruned weights are evaluated as they are). */
  readonly finetune?: Finetune
}

export const prune = (o: {
  readonly source: string | SourceRef
  readonly method: PruneMethod
  readonly finetune?: ({ readonly tokens: number } | { readonly steps: number }) & { readonly optimizer?: OptimizerConfig; readonly objective?: Objective }
}): PruneVariant => ({
  op: "prune",
  source: typeof o.source === "string" ? { experiment: o.source } : o.source,
  method: o.method,
  ...(o.finetune === undefined
    ? {}
    : {
        finetune: {
          budget: "tokens" in o.finetune ? { tokens: o.finetune.tokens } : { steps: o.finetune.steps },
          ...(o.finetune.optimizer === undefined ? {} : { optimizer: o.finetune.optimizer }),
          ...(o.finetune.objective === undefined ? {} : { objective: o.finetune.objective }),
        },
      }),
})

/** The source as a pruned run's spec.json records it. */
export interface SourceRecord {
  readonly experiment: string
  readonly variant: string
  readonly seed: number
  /** The source's run directory: relative to the repository when inside it. */
  readonly dir: string
  /** Identity of what was pruned, filled in when it is: the run's spec hash, its checkpoint's model.safetensors sha256, and step. */
  readonly specHash?: string
  readonly checkpoint?: string
  readonly step?: number
}

export interface PruneRecord {
  readonly source: SourceRecord
  readonly method: PruneMethod
}

const SourceRefSchema = Schema.Struct({ experiment: Schema.String, variant: Schema.optionalKey(RunName), seed: Schema.optionalKey(Seed) })
const FinetuneSchema = Schema.Struct({ budget: BudgetSchema, optimizer: Schema.optionalKey(OptimizerSchema), objective: Schema.optionalKey(ObjectiveSchema) })
const SourceRecordSchema = Schema.Struct({
  experiment: RunName,
  variant: RunLabel,
  seed: Seed,
  dir: Schema.String,
  specHash: Schema.optionalKey(Schema.String),
  checkpoint: Schema.optionalKey(Schema.String),
  step: Schema.optionalKey(Schema.Int),
})

export const isPruneVariant = (u: unknown): u is PruneVariant => typeof u === "object" && u !== null && (u as { op?: unknown }).op === "prune"

type Path = ReadonlyArray<string | number>
interface Decoded<T> {
  readonly value?: T
  readonly issues: ReadonlyArray<Issue>
}

const formatter = SchemaIssue.makeFormatterStandardSchemaV1()
const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

const withSchema = <T>(schema: Schema.Codec<T, any>, input: unknown, path: Path): Decoded<T> => {
  const r = Schema.decodeUnknownResult(schema)(input, { errors: "all", onExcessProperty: "error" })
  if (Result.isSuccess(r)) return { value: r.success, issues: [] }
  return { issues: formatter(r.failure.issue).issues.map((i) => ({ path: [...path, ...(i.path ?? []).map((k) => (typeof k === "number" ? k : String(k)))], message: i.message })) }
}

/** A method by its `kind`, through the registry: an unknown kind is named with every known one. */
export const decodeMethod = (input: unknown, path: Path): Decoded<PruneMethod> => {
  if (!isRecord(input)) return { issues: [{ path, message: `expected a pruning method, e.g. magnitude({ sparsity: 0.5 }), got ${JSON.stringify(input)}` }] }
  const kind = input["kind"]
  if (typeof kind !== "string" || !Object.hasOwn(pruneMethods, kind)) {
    return { issues: [{ path: [...path, "kind"], message: `unknown pruning method ${JSON.stringify(kind)}; expected one of ${Object.keys(pruneMethods).join(", ")}` }] }
  }
  return withSchema(pruneMethods[kind as keyof typeof pruneMethods].schema as unknown as Schema.Codec<PruneMethod, any>, input, path)
}

const decodeWithMethod = <T extends { readonly method: PruneMethod }>(fields: Schema.Struct.Fields, input: unknown, path: Path): Decoded<T> => {
  const top = withSchema(Schema.Struct({ ...fields, method: Schema.Unknown }) as unknown as Schema.Codec<T, any>, input, path)
  const method = decodeMethod(isRecord(input) ? input["method"] : undefined, [...path, "method"])
  const issues = [...top.issues, ...method.issues]
  return issues.length > 0 || !top.value || !method.value ? { issues } : { value: { ...top.value, method: method.value }, issues: [] }
}

/** A `prune(...)` variant of an experiment file. */
export const decodePruneVariant = (input: unknown, path: Path): Decoded<PruneVariant> =>
  decodeWithMethod<PruneVariant>({ op: Schema.Literal("prune"), source: SourceRefSchema, finetune: Schema.optionalKey(FinetuneSchema) }, input, path)

/** The `prune` field of a run's spec.json. */
export const decodePruneRecord = (input: unknown, path: Path): Decoded<PruneRecord> =>
  decodeWithMethod<PruneRecord>({ source: SourceRecordSchema }, input, path)
