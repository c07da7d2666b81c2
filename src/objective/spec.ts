import { Schema } from "effect"
import { formatPath } from "../../dsl/decode.js"
import { blocksOf, type DecoderSpec } from "../../dsl/nodes.js"
import { NonNegativeInt, PositiveNumber } from "../../dsl/fields.js"
import { type RunRef, RunRefSchema } from "../experiment/run-ref.js"

/**
 * What a run minimises, as plain data recorded in its spec.json: the plain next-token
 * cross-entropy (the default; a spec.json without `objective` means it), or distillation from
 * a teacher run (src/objective/distill-loss.ts gives the formula).
 */
export const CrossEntropySchema = Schema.Struct({ kind: Schema.Literal("cross-entropy") })

export const HiddenMatchSchema = Schema.Struct({
  /** [student block, teacher block]: the student block's output is pulled towards the teacher block's. */
  pairs: Schema.Array(Schema.Tuple([NonNegativeInt, NonNegativeInt])).check(Schema.isMinLength(1)),
  /** 1 − cosine similarity, or mean squared error, per position. */
  loss: Schema.Literals(["cosine", "mse"]),
  /** Weight of the term, added to the logit loss. */
  weight: PositiveNumber,
})
export type HiddenMatch = typeof HiddenMatchSchema.Type

export const DistillSchema = Schema.Struct({
  kind: Schema.Literal("distill"),
  teacher: RunRefSchema,
  temperature: PositiveNumber,
  /** Weight of the hard-target cross-entropy; 1 − alpha weighs the soft targets. */
  alpha: Schema.Finite.check(Schema.isBetween({ minimum: 0, maximum: 1 })),
  divergence: Schema.Literals(["forward-kl", "reverse-kl"]),
  hidden: Schema.optionalKey(HiddenMatchSchema),
})
export type Distill = typeof DistillSchema.Type

export const ObjectiveSchema = Schema.Union([CrossEntropySchema, DistillSchema])
export type Objective = typeof ObjectiveSchema.Type

export const crossEntropy = (): Objective => ({ kind: "cross-entropy" })

/**
 * Distillation from a finished teacher run (`runOf("base")` trains it first when missing):
 * α·CE + (1 − α)·T²·KL at temperature T, forward KL(teacher ∥ student) by default, plus
 * optionally `weight` × a hidden-state matching term between chosen student and teacher
 * blocks (a learned projection maps the student's width to the teacher's when they differ).
 */
export const distill = (o: {
  readonly teacher: RunRef
  readonly temperature: number
  readonly alpha: number
  readonly divergence?: Distill["divergence"]
  readonly hidden?: { readonly pairs: ReadonlyArray<readonly [number, number]>; readonly loss?: HiddenMatch["loss"]; readonly weight?: number }
}): Objective => ({
  kind: "distill",
  teacher: o.teacher,
  temperature: o.temperature,
  alpha: o.alpha,
  divergence: o.divergence ?? "forward-kl",
  ...(o.hidden ? { hidden: { pairs: o.hidden.pairs.map(([s, t]) => [s, t] as const), loss: o.hidden.loss ?? "cosine", weight: o.hidden.weight ?? 1 } } : {}),
})

/**
 * Problems of an objective against the student's model, at paths under `prefix`. Hidden-state
 * matching reads every block's output, which a depth policy's forward (blocks skipped,
 * positions routed past a block) does not give, so the two are refused together.
 */
export const objectiveProblems = (objective: Objective, student: DecoderSpec, prefix: ReadonlyArray<string | number>): string[] => {
  if (objective.kind !== "distill" || !objective.hidden) return []
  const blocks = blocksOf(student.layers).length
  const policy = student.layers.policy
  return [
    ...objective.hidden.pairs.flatMap(([s], i) =>
      s < blocks ? [] : [`at ${formatPath([...prefix, "hidden", "pairs", i, 0])}: student block ${s} does not exist; the student has ${blocks} blocks (0–${blocks - 1})`],
    ),
    ...(policy ? [`at ${formatPath([...prefix, "hidden"])}: hidden-state matching reads each block's output, which the student's ${policy.kind} policy does not give; distil the logits only`] : []),
  ]
}

/** One line for listings: "distill forward-kl T=2 α=0.5 from base, hidden 1→1 3→3 cosine ×1". */
export const describeObjective = (o: Objective): string =>
  o.kind === "cross-entropy"
    ? "cross-entropy"
    : `distill ${o.divergence} T=${o.temperature} α=${o.alpha} from ${o.teacher.run}` +
      (o.hidden ? `, hidden ${o.hidden.pairs.map(([s, t]) => `${s}→${t}`).join(" ")} ${o.hidden.loss} ×${o.hidden.weight}` : "")
