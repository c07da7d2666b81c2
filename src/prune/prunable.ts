import type { NamedParam } from "../../dsl/params.js"

/**
 * The weights unstructured pruning acts on: every matrix inside the blocks (attention and FFN
 * projections). Embeddings, position tables, norm gains, biases, Linformer's sequence
 * projections and an untied LM head are left dense, as is usual (Han et al. 2015; Wanda).
 */
export const isPrunable = (p: NamedParam): boolean =>
  p.name.startsWith("blocks.") && p.decl.shape.length === 2 && !p.decl.embedding && !p.decl.alongSequence

export const prunableParams = (table: ReadonlyArray<NamedParam>): NamedParam[] => table.filter(isPrunable)
