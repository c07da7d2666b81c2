import { Schema } from "effect"
import { formatPath } from "../../../dsl/decode.js"
import type { DecoderSpec } from "../../../dsl/nodes.js"
import { moduleFor, type SpecOf, type SpecOfTag } from "../../../dsl/registry.js"
import type { RunRef, SourceRole } from "../run-ref.js"
import { crossEntropyObjective } from "./kinds/cross-entropy.js"
import type { ObjectiveDescription } from "./kinds/description.js"
import { distillObjective } from "./kinds/distill.js"

/**
 * The objectives, by tag: what a run minimises, as plain data recorded in its spec.json.
 * Adding one is its description here (one module, one line) and its computation in
 * src/objective/objective.ts, whose record is typed by these tags.
 */
export const objectives = {
  "cross-entropy": crossEntropyObjective,
  distill: distillObjective,
} as const

export type Objective = SpecOf<typeof objectives>
export type ObjectiveTag = keyof typeof objectives
export type ObjectiveOf<K extends ObjectiveTag> = SpecOfTag<typeof objectives, K>
export type { Distill, HiddenMatch } from "./kinds/distill.js"

export const ObjectiveSchema = Schema.Union(Object.values(objectives).map((o) => o.schema) as [typeof crossEntropyObjective.schema, typeof distillObjective.schema])

export const objectiveModule = (o: Objective) => moduleFor<ObjectiveDescription<Objective>>(objectives, "objective", o)

export const crossEntropy = crossEntropyObjective.make
/**
 * Distillation from a finished teacher run (`runOf("base")` trains it first when missing):
 * α·CE + (1 − α)·T²·KL at temperature T, forward KL(teacher ∥ student) by default, plus
 * optionally `weight` × a hidden-state matching term between chosen student and teacher
 * blocks (a learned projection maps the student's width to the teacher's when they differ).
 */
export const distill = (o: Parameters<typeof distillObjective.make>[0]): Objective => distillObjective.make(o)

/** Whether a run states the objective (the default one is left out of spec.json and the spec hash). */
export const isExplicit = (o: Objective | undefined): o is Objective => o !== undefined && objectiveModule(o).implicit?.(o) !== true

/** Problems of an objective against the student's model, at paths under `prefix`. */
export const objectiveProblems = (o: Objective, student: DecoderSpec, prefix: ReadonlyArray<string | number>): string[] =>
  objectiveModule(o).check(o, student).map((i) => `at ${formatPath([...prefix, ...i.path])}: ${i.message}`)

/** The runs an objective reads, with their roles. */
export const objectiveSources = (o: Objective | undefined): ReadonlyArray<{ readonly ref: RunRef; readonly role: SourceRole }> =>
  o === undefined ? [] : objectiveModule(o).sources(o)

/** One line for listings: "distill forward-kl T=2 α=0.5 from base, hidden 1→1 3→3 cosine ×1". */
export const describeObjective = (o: Objective): string => objectiveModule(o).label(o)
