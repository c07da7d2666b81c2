import type { Schema } from "effect"
import type { Dims, Issue, ParamDecls } from "../../kind.js"
import type { BlockSpec } from "../../nodes.js"

/**
 * What a depth policy (how many blocks each token runs through) says about itself apart from
 * how it computes: its Schema, checks against the stack it governs, the parameters it adds,
 * their FLOPs and a label. Its computation lives in src/depth/, keyed by the same tag.
 */
export interface DepthPolicyDescription<P> {
  readonly schema: Schema.Codec<P, any>
  /** Problems with the policy on these blocks; paths are relative to the policy. */
  readonly check: (policy: P, blocks: ReadonlyArray<BlockSpec>, dims: Dims) => ReadonlyArray<Issue>
  /** The policy's own parameters in block `block` of `blocks`, named relative to `blocks.{block}`. */
  readonly params: (policy: P, block: number, blocks: number, dims: Dims) => ParamDecls
  /** Forward FLOPs per token the policy adds at most (exit heads, routers), beyond the blocks and the LM head. */
  readonly flops: (policy: P, blocks: number, dims: Dims) => number
  /**
   * Why evaluation and generation under the policy compute something other than every block
   * on every position (the plain stack), or undefined when they compute exactly that: a
   * consumer that can only run the plain stack (an export) refuses the first.
   */
  readonly departs: (policy: P, blocks: number) => string | undefined
  /** One short label, e.g. "layer-drop(p=0.2)". */
  readonly label: (policy: P) => string
}

/** One issue at `field` of the policy when `ok` is false. */
export const unless = (ok: boolean, field: string, message: string): Issue[] => (ok ? [] : [{ path: [field], message }])

/** A policy that chooses among blocks needs more than one. */
export const needsBlocks = (blocks: ReadonlyArray<BlockSpec>, kind: string, why: string): Issue[] =>
  blocks.length >= 2 ? [] : [{ path: [], message: `${kind} needs at least 2 blocks (${why}); this stack has ${blocks.length}` }]
