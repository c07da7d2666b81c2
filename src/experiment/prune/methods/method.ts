import type { Schema } from "effect"
import type { Issue } from "../../../../dsl/kind.js"
import type { DecoderSpec } from "../../../../dsl/nodes.js"

/**
 * What a pruning method says about itself, apart from how it computes (src/prune/compute/):
 * its Schema (the JSON in an experiment and in a pruned run's spec.json), what it removes,
 * the checks it makes against the source model before any work, and a label.
 */
export interface MethodDescription<M> {
  readonly schema: Schema.Codec<M, any>
  /** Single weights (masked to zero, same model) or whole heads or FFN neurons (a smaller model). */
  readonly structure: "weights" | "heads" | "neurons"
  /** Problems with this method on this source model; paths are relative to the method. */
  readonly check: (method: M, source: DecoderSpec, finetune: boolean) => ReadonlyArray<Issue>
  readonly label: (method: M) => string
}
