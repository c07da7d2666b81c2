import { Schema } from "effect"
import { NonNegativeInt, PositiveNumber } from "../../../../dsl/fields.js"
import type { Issue } from "../../../../dsl/kind.js"
import { posencModule } from "../../../../dsl/kinds/posenc/index.js"
import { blocksOf, dimsOf } from "../../../../dsl/nodes.js"
import { type RunRef, RunRefSchema } from "../../run-ref.js"
import { ZLossField, zLossLabel } from "./cross-entropy.js"
import type { ObjectiveDescription } from "./description.js"

/**
 * Distillation from a finished teacher run: α·CE + (1 − α)·T²·KL at temperature T (the
 * formula is src/objective/distill-loss.ts), forward KL(teacher ∥ student) by default, plus
 * optionally `weight` × a hidden-state matching term between chosen student and teacher blocks.
 */
export const HiddenMatchSchema = Schema.Struct({
  /** [student block, teacher block]: the student block's output is pulled towards the teacher block's. */
  pairs: Schema.Array(Schema.Tuple([NonNegativeInt, NonNegativeInt])).check(Schema.isMinLength(1)),
  /** 1 − cosine similarity, or mean squared error, per position. */
  loss: Schema.Literals(["cosine", "mse"]),
  /** Weight of the term, added to the logit loss. */
  weight: PositiveNumber,
})
export type HiddenMatch = typeof HiddenMatchSchema.Type

const schema = Schema.Struct({
  kind: Schema.Literal("distill"),
  teacher: RunRefSchema,
  temperature: PositiveNumber,
  /** Weight of the hard-target cross-entropy; 1 − alpha weighs the soft targets. */
  alpha: Schema.Finite.check(Schema.isBetween({ minimum: 0, maximum: 1 })),
  divergence: Schema.Literals(["forward-kl", "reverse-kl"]),
  hidden: Schema.optionalKey(HiddenMatchSchema),
  /** PaLM's z-loss on the student's logits, added to the loss as under cross-entropy. */
  zLoss: ZLossField,
})
export type Distill = typeof schema.Type

/** Hidden-state matching reads every block's output, which a depth policy's forward (blocks skipped, positions routed past a block) does not give. */
const hiddenWithPolicy = (o: Distill, policy: string | undefined, whose: (policy: string) => string): Issue[] =>
  o.hidden && policy !== undefined ? [{ path: ["hidden"], message: `hidden-state matching reads each block's output, which ${whose(policy)} does not give; distil the logits only` }] : []

export const distillObjective: ObjectiveDescription<Distill> & {
  readonly make: (o: {
    readonly teacher: RunRef
    readonly temperature: number
    readonly alpha: number
    readonly divergence?: Distill["divergence"]
    readonly hidden?: { readonly pairs: ReadonlyArray<readonly [number, number]>; readonly loss?: HiddenMatch["loss"]; readonly weight?: number }
    readonly zLoss?: number
  }) => Distill
} = {
  schema,
  make: (o) => ({
    kind: "distill",
    teacher: o.teacher,
    temperature: o.temperature,
    alpha: o.alpha,
    divergence: o.divergence ?? "forward-kl",
    ...(o.hidden ? { hidden: { pairs: o.hidden.pairs.map(([s, t]) => [s, t] as const), loss: o.hidden.loss ?? "cosine", weight: o.hidden.weight ?? 1 } } : {}),
    ...(o.zLoss === undefined ? {} : { zLoss: o.zLoss }),
  }),
  check: (o, student) => {
    const blocks = blocksOf(student.layers).length
    return [
      ...(o.hidden?.pairs ?? []).flatMap(([s], i) =>
        s < blocks ? [] : [{ path: ["hidden", "pairs", i, 0], message: `student block ${s} does not exist; the student has ${blocks} blocks (0–${blocks - 1})` }],
      ),
      ...hiddenWithPolicy(o, student.layers.policy?.kind, (p) => `the student's ${p} policy`),
    ]
  },
  sources: (o) => [{ ref: o.teacher, role: "teacher" }],
  withSources: (o, [teacher]) => ({ ...o, teacher: teacher ?? o.teacher }),
  checkSource: (o, student, teacher, dir) => {
    const covers = posencModule(teacher.posenc).maxLength?.(teacher.posenc, dimsOf(teacher))
    const blocks = blocksOf(teacher.layers).length
    return [
      ...(covers !== undefined && covers < student.context
        ? [{ path: [], message: `its position scheme (${teacher.posenc.kind}) covers ${covers} positions, the student trains on sequences of ${student.context}` }]
        : []),
      ...(o.hidden?.pairs ?? []).flatMap(([, t], i) =>
        t < blocks ? [] : [{ path: ["hidden", "pairs", i, 1], message: `teacher block ${t} does not exist; the teacher (${dir}) has ${blocks} blocks (0–${blocks - 1})` }],
      ),
      ...hiddenWithPolicy(o, teacher.layers.policy?.kind, (p) => `the teacher's ${p} policy (${dir})`),
    ]
  },
  label: (o) =>
    `distill ${o.divergence} T=${o.temperature} α=${o.alpha} from ${o.teacher.run}` +
    (o.hidden ? `, hidden ${o.hidden.pairs.map(([s, t]) => `${s}→${t}`).join(" ")} ${o.hidden.loss} ×${o.hidden.weight}` : "") +
    zLossLabel(o.zLoss),
}
