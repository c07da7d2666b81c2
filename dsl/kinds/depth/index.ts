import { entryFor, moduleFor, type SpecOf, type SpecOfTag } from "../../registry.js"
import type { DepthPolicyDescription } from "./description.js"
import { earlyExitPolicy } from "./early-exit.js"
import { layerDropPolicy } from "./layer-drop.js"
import { mixtureOfDepthsPolicy } from "./mixture-of-depths.js"

/**
 * The depth policies, by tag: how many blocks each token goes through. A policy is an
 * optional field of a decoder's `depth` or `stack` node. Registering a new one is one line
 * here (its description) and one in src/depth/index.ts (its computation).
 */
export const depthPolicies = {
  "layer-drop": layerDropPolicy,
  "early-exit": earlyExitPolicy,
  "mixture-of-depths": mixtureOfDepthsPolicy,
} as const

export type DepthPolicy = SpecOf<typeof depthPolicies>
export type PolicyTag = keyof typeof depthPolicies
export type PolicyOf<K extends PolicyTag> = SpecOfTag<typeof depthPolicies, K>
export type PolicyOptions<K extends PolicyTag> = Parameters<(typeof depthPolicies)[K]["make"]>

export const policy = <K extends PolicyTag>(kind: K, ...options: PolicyOptions<K>): DepthPolicy =>
  (entryFor(depthPolicies, "depth policy", kind).make as (...o: PolicyOptions<K>) => DepthPolicy)(...options)

export const policyModule = (spec: DepthPolicy) => moduleFor<DepthPolicyDescription<DepthPolicy>>(depthPolicies, "depth policy", spec)
