import type { Schema } from "effect"
import type { Issue } from "../../../dsl/kind.js"
import type { DecoderSpec } from "../../../dsl/nodes.js"
import type { RunRef } from "../run-ref.js"

/**
 * What a warm start (a run's first weights taken from another run) says about itself, apart
 * from how it computes (src/train/warm-starts.ts): its Schema (the JSON in an experiment and a
 * spec.json), its checks against the student's model, the run it reads and what it needs of
 * it, and a label.
 */
export interface WarmStartDescription<W> {
  readonly schema: Schema.Codec<W, any>
  /** Problems against the student's model; paths relative to the warm start. */
  readonly check: (init: W, student: DecoderSpec) => ReadonlyArray<Issue>
  /** The run it starts from. */
  readonly source: (init: W) => RunRef
  /** The warm start with its source's reference replaced (its fingerprint filled in). */
  readonly withSource: (init: W, ref: RunRef) => W
  /** What it needs of the source run at `dir`, from the two specs alone; paths relative to the warm start, empty for the source as a whole. */
  readonly checkSource: (init: W, student: DecoderSpec, source: DecoderSpec, dir: string) => ReadonlyArray<Issue>
  /** One line for listings: "from base, blocks 0, 2". */
  readonly label: (init: W) => string
}
