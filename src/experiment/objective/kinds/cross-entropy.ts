import { Schema } from "effect"
import type { ObjectiveDescription } from "./description.js"

/** The plain next-token cross-entropy: the default, which a spec.json without `objective` means. */
const schema = Schema.Struct({ kind: Schema.Literal("cross-entropy") })
export type CrossEntropy = typeof schema.Type

export const crossEntropyObjective: ObjectiveDescription<CrossEntropy> & { readonly make: () => CrossEntropy } = {
  schema,
  make: () => ({ kind: "cross-entropy" }),
  implicit: true,
  check: () => [],
  sources: () => [],
  withSources: (o) => o,
  checkSource: () => [],
  label: () => "cross-entropy",
}
