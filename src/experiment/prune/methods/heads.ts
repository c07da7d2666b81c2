import { Schema } from "effect"
import type { Issue } from "../../../../dsl/kind.js"
import type { DecoderSpec } from "../../../../dsl/nodes.js"
import { attentionUnits } from "../units.js"
import { Calibration, defaultCalibration } from "./fields.js"
import type { MethodDescription } from "./method.js"
import { Remove, removeIssues, removeLabel } from "./structured.js"

/**
 * Attention heads by importance (Michel et al. 2019, "Are Sixteen Heads Really Better than
 * One?"): a mask ξ_h multiplies each head's output, I_h = E|∂L/∂ξ_h| over the calibration
 * batches, normalised by its layer's L2 norm, and the least important heads go first, across
 * layers. `by: "random"` removes heads chosen at random (seeded) instead: the baseline.
 * The pruned model is smaller: each block keeps its remaining heads, at the same head size.
 */
const schema = Schema.Struct({
  kind: Schema.Literal("heads"),
  remove: Remove,
  by: Schema.Literals(["importance", "random"]),
  calibration: Calibration,
})
export type Heads = typeof schema.Type

const make = (o: { readonly remove: Remove; readonly by?: Heads["by"]; readonly calibration?: { readonly batches: number } }): Heads => ({
  kind: "heads",
  remove: o.remove,
  by: o.by ?? "importance",
  calibration: o.calibration ?? defaultCalibration,
})

/**
 * Models whose heads cannot be removed without changing what the others compute. T5's bias
 * table is shared by every layer and a block with h heads reads its first h columns, so the
 * remaining heads would read other heads' biases (reordering the columns per layer would
 * need one table per layer); ALiBi's slopes follow a block's head count and each head's
 * index; sparse "split" gives the first ⌈H/2⌉ heads one factor, so the split would move.
 */
export const headPruningIssues = (source: DecoderSpec): Issue[] => {
  const posenc = source.posenc.kind
  const shared =
    posenc === "t5"
      ? "T5's bias table is shared by all layers and a block with h heads reads its first h columns, so after removing a head the remaining heads would read other heads' biases"
      : posenc === "alibi"
        ? "ALiBi's slopes follow a block's head count and each head's index, so with fewer heads the remaining heads would get other slopes"
        : undefined
  return [
    ...(shared ? [{ path: [], message: `head pruning refuses posenc ${posenc}: ${shared}` }] : []),
    ...attentionUnits(source)
      .filter((u) => (u.spec.kind === "sparse-strided" || u.spec.kind === "sparse-fixed") && u.spec.combine === "split")
      .map((u) => ({ path: [], message: `head pruning refuses ${u.prefix} (${u.spec.kind}, combine "split"): the first ⌈H/2⌉ heads use one factor and the rest the other, so with fewer heads the split would move` })),
  ]
}

export const heads: MethodDescription<Heads> & { make: typeof make } = {
  schema,
  make,
  structure: "heads",
  check: (m, source) => [
    ...removeIssues(
      m.remove,
      attentionUnits(source).map((u) => u.spec.heads),
      "heads",
    ),
    ...headPruningIssues(source),
  ],
  label: (m) => `heads(${removeLabel(m.remove)}, ${m.by})`,
}
