import { keepBlocks, keptParamSource, type Which, withPolicy } from "../../dsl/blocks.js"
import type { Measure } from "../../dsl/kinds/depth/early-exit.js"
import { policyModule } from "../../dsl/kinds/depth/index.js"
import { blocksOf, type DecoderSpec } from "../../dsl/nodes.js"
import type { Derivation } from "./derive-run.js"

/**
 * The models a trained one gives without training: some of its blocks (LayerDrop's pruning at
 * inference), or its early exits at another threshold. Each is a new spec and, for every
 * parameter, the trained one it is.
 */

/**
 * "every-other" (blocks 0, 2, 4, …) or block indices in increasing order "0,2,5"; undefined for
 * anything else, a repeated or out-of-order index included (the blocks keep their order).
 */
export const parseBlocks = (text: string): Which | undefined => {
  if (text === "every-other") return (i) => i % 2 === 0
  const list = text.split(",").map((s) => s.trim())
  if (!list.every((s) => /^\d+$/.test(s))) return undefined
  const indices = list.map(Number)
  return indices.every((n, i) => i === 0 || n > indices[i - 1]!) ? indices : undefined
}

/** What --keep-blocks accepts, for messages. */
export const blocksExpected = '"every-other" or increasing block indices like 0,2,4'

/**
 * Some blocks, without the depth policy: a policy that computes the plain stack at inference
 * (LayerDrop, whose models are cut this way) is dropped; one that departs from it (exits,
 * routing) belongs to the whole stack, and the cut model would silently differ: refused.
 */
export const keptBlocks = (model: DecoderSpec, which: Which, label: string): Derivation => {
  const policy = model.layers.policy
  const departs = policy && policyModule(policy).departs(policy, blocksOf(model.layers).length)
  if (policy && departs !== undefined)
    throw new Error(`--keep-blocks: at ["layers","policy"]: ${policyModule(policy).label(policy)}: ${departs}; the kept blocks would run without it, a different model; keep blocks of a model whose policy runs every block at inference (layer-drop) or that has none`)
  return { model: keepBlocks(model, which), source: keptParamSource(model, which), note: `blocks ${label}` }
}

export const exitsAt = (model: DecoderSpec, change: { readonly threshold?: number; readonly measure?: Measure }): Derivation => {
  const policy = model.layers.policy
  if (policy?.kind !== "early-exit") throw new Error(`the model has ${policy ? `a ${policy.kind} policy` : "no depth policy"}, not early exit`)
  const next = { ...policy, ...change }
  return { model: withPolicy(model, next), source: (name) => name, note: `exit ${next.measure}>${next.threshold}` }
}

/** Blocks in the model. */
export const blockCount = (model: DecoderSpec): number => blocksOf(model.layers).length
