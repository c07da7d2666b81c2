import { Schema } from "effect"
import type { Dims, ParamDecls } from "../../kind.js"
import { type DepthPolicyDescription, unless } from "./description.js"

/**
 * Mixture-of-depths (Raposo et al. 2024): in every `every`-th block (blocks every−1,
 * 2·every−1, …) a linear router scores each token, and only the top `capacity` fraction of
 * the sequence's tokens go through the block; the others pass along the residual. The block's
 * contribution is multiplied by sigmoid(router score), which is how the router gets gradients.
 * Top-k over the sequence sees later tokens, so it is used only in training; evaluation and
 * generation use a causal decision, a small MLP (`predictor` hidden units) trained with a
 * stop-gradient binary cross-entropy to predict the router's choice from the token alone.
 * Inside a routed block the chosen tokens form a sequence of their own: attention, windows and
 * relative positions count chosen tokens. Capacity 1 routes nothing: the plain decoder.
 */
const schema = Schema.Struct({
  op: Schema.Literal("policy"),
  kind: Schema.Literal("mixture-of-depths"),
  capacity: Schema.Finite,
  every: Schema.Int,
  predictor: Schema.Int,
})
export type MixtureOfDepths = typeof schema.Type

export interface MixtureOfDepthsOptions {
  readonly capacity: number
  readonly every?: number
  readonly predictor?: number
}

/** Whether block `block` has a router. */
export const isRouted = (p: MixtureOfDepths, block: number): boolean => p.capacity < 1 && (block + 1) % p.every === 0

/** Tokens a routed block processes out of a sequence of `length` in training: ⌈capacity · length⌉. */
export const routedTokens = (p: MixtureOfDepths, length: number): number => Math.min(length, Math.ceil(p.capacity * length))

/** Router (width → 1) and predictor (width → predictor → 1) matmuls, per token of a routed block. */
export const routingFlops = (p: MixtureOfDepths, dims: Dims): number => 2 * dims.width + 2 * (dims.width * p.predictor + p.predictor)

const routerParams = (p: MixtureOfDepths, dims: Dims): ParamDecls => ({
  "router.weight": { shape: [dims.width, 1], init: { kind: "normal", std: 0.02 }, decay: true },
  "predictor.w1": { shape: [dims.width, p.predictor], init: { kind: "normal", std: 0.02 }, decay: true },
  "predictor.b1": { shape: [p.predictor], init: { kind: "zeros" }, decay: false },
  "predictor.w2": { shape: [p.predictor, 1], init: { kind: "normal", std: 0.02 }, decay: true },
  "predictor.b2": { shape: [1], init: { kind: "zeros" }, decay: false },
})

export const mixtureOfDepthsPolicy: DepthPolicyDescription<MixtureOfDepths> & { make: (o: MixtureOfDepthsOptions) => MixtureOfDepths } = {
  schema,
  make: (o) => ({ op: "policy", kind: "mixture-of-depths", capacity: o.capacity, every: o.every ?? 2, predictor: o.predictor ?? 32 }),
  check: (p, blocks) => [
    ...unless(p.capacity > 0 && p.capacity <= 1, "capacity", `the fraction of tokens a routed block processes must be in (0, 1], got ${p.capacity}`),
    ...unless(p.every >= 1, "every", `routing every n-th block needs n ≥ 1, got ${p.every}`),
    ...unless(p.every < 1 || p.every <= blocks.length, "every", `every = ${p.every} routes blocks ${p.every - 1}, ${2 * p.every - 1}, …: none of these ${blocks.length}`),
    ...unless(p.predictor >= 1, "predictor", `the predictor needs at least 1 hidden unit, got ${p.predictor}`),
  ],
  params: (p, block, _blocks, dims) => (isRouted(p, block) ? routerParams(p, dims) : {}),
  flops: (p, blocks, dims) => Array.from({ length: blocks }, (_, i) => (isRouted(p, i) ? routingFlops(p, dims) : 0)).reduce((a, b) => a + b, 0),
  departs: (p, blocks) => {
    const routed = Array.from({ length: blocks }, (_, i) => i).filter((i) => isRouted(p, i))
    if (routed.length === 0) return undefined
    return routed.length === 1 ? `block ${routed[0]} runs only the positions its predictor chooses` : `blocks ${routed.join(", ")} run only the positions their predictors choose`
  },
  label: (p) => `mixture-of-depths(c=${p.capacity}, every ${p.every})`,
}
