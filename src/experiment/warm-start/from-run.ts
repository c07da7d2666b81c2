import { Schema } from "effect"
import { NonNegativeInt } from "../../../dsl/fields.js"
import { blocksOf } from "../../../dsl/nodes.js"
import { paramTable } from "../../../dsl/params.js"
import { type RunRef, RunRefSchema } from "../run-ref.js"
import type { WarmStartDescription } from "./description.js"

/**
 * Starting a run from another run's weights instead of a seeded initialisation: every
 * parameter by name (e.g. from a structurally pruned run whose spec is the student's), or
 * with `blocks` the student's block j from the source's block blocks[j] (DistilBERT's every
 * other layer: `keepBlocks(teacher, (i) => i % 2 === 0)` with `blocks: [0, 2]`), embeddings,
 * position tables, final norm and head by name. Shapes must match. The only warm start so far,
 * so its `kind` may be left out (every spec.json written before the registry does).
 */
const schema = Schema.Struct({
  kind: Schema.optionalKey(Schema.Literal("from-run")),
  from: RunRefSchema,
  blocks: Schema.optionalKey(Schema.Array(NonNegativeInt)),
})
export type FromRun = typeof schema.Type

/** The source parameter a student parameter starts from: `blocks.j.…` ← `blocks.{blocks[j]}.…`. */
export const sourceNameOf = (name: string, blocks: ReadonlyArray<number> | undefined): string => {
  const m = /^blocks\.(\d+)\.(.*)$/.exec(name)
  return blocks === undefined || m === null ? name : `blocks.${blocks[Number(m[1])]}.${m[2]}`
}

export const fromRunStart: WarmStartDescription<FromRun> & { readonly make: (source: RunRef, o?: { readonly blocks?: ReadonlyArray<number> }) => FromRun } = {
  schema,
  make: (source, o = {}) => ({ from: source, ...(o.blocks ? { blocks: [...o.blocks] } : {}) }),
  check: (init, student) => {
    const blocks = blocksOf(student.layers).length
    return init.blocks !== undefined && init.blocks.length !== blocks
      ? [{ path: ["blocks"], message: `${init.blocks.length} source blocks for a student of ${blocks} blocks; give one source block per student block` }]
      : []
  },
  source: (init) => init.from,
  withSource: (init, ref) => ({ ...init, from: ref }),
  checkSource: (init, student, source, dir) => {
    const sourceBlocks = blocksOf(source.layers).length
    const missing = (init.blocks ?? []).filter((b) => b >= sourceBlocks)
    if (missing.length > 0) return [{ path: ["blocks"], message: `source blocks ${missing.join(", ")} do not exist; ${dir} has ${sourceBlocks} blocks (0–${sourceBlocks - 1})` }]
    const have = new Map(paramTable(source).map((p) => [p.name, p.decl.shape.join("×")]))
    // An experiment's specs name the vocabulary by its BPE size, a run's spec.json by the
    // tokenizer's real size; the tokenizer check covers the vocabulary.
    const bad = paramTable({ ...student, vocab: source.vocab }).flatMap((p) => {
      const from = sourceNameOf(p.name, init.blocks)
      const shape = have.get(from)
      return shape === p.decl.shape.join("×") ? [] : [`${p.name} ← ${from}: ${shape === undefined ? "the source has no such parameter" : `shape ${shape}, the student's ${p.decl.shape.join("×")}`}`]
    })
    return bad.length === 0 ? [] : [{ path: [], message: `${bad.length} parameters cannot start from it:\n  ${bad.slice(0, 8).join("\n  ")}${bad.length > 8 ? "\n  ..." : ""}` }]
  },
  label: (init) => `from ${init.from.run}${init.blocks ? `, blocks ${init.blocks.join(", ")}` : ""}`,
}
