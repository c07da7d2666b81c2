import { Schema } from "effect"
import { formatPath } from "../../dsl/decode.js"
import { NonNegativeInt } from "../../dsl/fields.js"
import { type RunRef, RunRefSchema } from "./run-ref.js"

/**
 * Starting a run from another run's weights instead of a seeded initialisation: every
 * parameter by name (e.g. from a structurally pruned run whose spec is the student's), or
 * with `blocks` the student's block j from the source's block blocks[j] (DistilBERT's every
 * other layer: `keepBlocks(teacher, (i) => i % 2 === 0)` with `blocks: [0, 2]`), embeddings,
 * position tables, final norm and head by name. Shapes must match.
 */
export const WarmStartSchema = Schema.Struct({
  from: RunRefSchema,
  blocks: Schema.optionalKey(Schema.Array(NonNegativeInt)),
})
export type WarmStart = typeof WarmStartSchema.Type

export const fromRun = (source: RunRef, o: { readonly blocks?: ReadonlyArray<number> } = {}): WarmStart => ({
  from: source,
  ...(o.blocks ? { blocks: [...o.blocks] } : {}),
})

/** The source parameter a student parameter starts from: `blocks.j.…` ← `blocks.{blocks[j]}.…`. */
export const sourceNameOf = (name: string, blocks: ReadonlyArray<number> | undefined): string => {
  const m = /^blocks\.(\d+)\.(.*)$/.exec(name)
  return blocks === undefined || m === null ? name : `blocks.${blocks[Number(m[1])]}.${m[2]}`
}

/** Problems of a warm start against the student's block count, at paths under `prefix`. */
export const warmStartProblems = (init: WarmStart, studentBlocks: number, prefix: ReadonlyArray<string | number>): string[] =>
  init.blocks !== undefined && init.blocks.length !== studentBlocks
    ? [`at ${formatPath([...prefix, "blocks"])}: ${init.blocks.length} source blocks for a student of ${studentBlocks} blocks; give one source block per student block`]
    : []

/** One line for listings: "from base, blocks 0, 2". */
export const describeWarmStart = (w: WarmStart): string => `from ${w.from.run}${w.blocks ? `, blocks ${w.blocks.join(", ")}` : ""}`
