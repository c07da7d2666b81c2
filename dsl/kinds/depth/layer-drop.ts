import { Schema } from "effect"
import { type DepthPolicyDescription, needsBlocks, unless } from "./description.js"

/**
 * LayerDrop (Fan et al. 2019): during training each block is skipped, for the whole batch,
 * with probability `rate`; the draw is seeded by the step's dropout seed (run seed, step and
 * micro-batch) and the block's index, so a resumed run skips the same blocks. Evaluation and
 * generation run every block; a shallower model is made by keeping some blocks (keepBlocks).
 */
const schema = Schema.Struct({
  op: Schema.Literal("policy"),
  kind: Schema.Literal("layer-drop"),
  rate: Schema.Finite,
})
export type LayerDrop = typeof schema.Type

export const layerDropPolicy: DepthPolicyDescription<LayerDrop> & { make: (o: { rate: number }) => LayerDrop } = {
  schema,
  make: (o) => ({ op: "policy", kind: "layer-drop", rate: o.rate }),
  check: (p, blocks) => [
    ...unless(p.rate >= 0 && p.rate < 1, "rate", `the probability of skipping a block must be in [0, 1), got ${p.rate}`),
    ...needsBlocks(blocks, "layer-drop", "with one block, dropping it leaves no model"),
  ],
  params: () => ({}),
  flops: () => 0,
  departs: () => undefined,
  label: (p) => `layer-drop(p=${p.rate})`,
}
