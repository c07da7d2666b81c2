import type { Schema } from "effect"
import type { Issue } from "../../../../dsl/kind.js"
import type { DecoderSpec } from "../../../../dsl/nodes.js"
import type { RunRef, SourceRole } from "../../run-ref.js"

/**
 * What an objective says about itself, apart from how it computes (src/objective/compute/):
 * its Schema (the JSON in an experiment and a spec.json), its checks against the student's
 * model, the runs it reads and what it needs of them, and a label. The run's loader, its
 * prerequisites and readers, and the listings read only these.
 */
export interface ObjectiveDescription<O> {
  readonly schema: Schema.Codec<O, any>
  /** Whether it is the default: left out of spec.json and the spec hash, so runs made before objectives keep theirs. */
  readonly implicit?: (objective: O) => boolean
  /** Problems against the student's model; paths relative to the objective. */
  readonly check: (objective: O, student: DecoderSpec) => ReadonlyArray<Issue>
  /** The runs it reads (a teacher), in order. */
  readonly sources: (objective: O) => ReadonlyArray<{ readonly ref: RunRef; readonly role: SourceRole }>
  /** The objective with its sources' references replaced (their fingerprints filled in), in `sources` order. */
  readonly withSources: (objective: O, refs: ReadonlyArray<RunRef>) => O
  /**
   * What it needs of the source run at `dir`, from the two specs alone (so before either
   * trains); paths relative to the objective, an empty path for the source as a whole.
   */
  readonly checkSource: (objective: O, student: DecoderSpec, source: DecoderSpec, dir: string) => ReadonlyArray<Issue>
  /** One line for listings: "distill forward-kl T=2 α=0.5 from base". */
  readonly label: (objective: O) => string
}
