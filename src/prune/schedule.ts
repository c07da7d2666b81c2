import type { Gradual } from "../experiment/prune/methods/gradual.js"

/**
 * Zhu & Gupta's cubic sparsity schedule over a fine-tune of `steps` optimiser steps:
 * s_t = s_f + (s_i − s_f)(1 − (t − t0)/(nΔt))³ at t = t0, t0 + Δt, …, t0 + nΔt, where t is
 * the number of steps taken. Before t0 nothing is pruned; from t0 + nΔt on, s_f holds.
 */
export interface CubicPlan {
  readonly initial: number
  readonly final: number
  readonly t0: number
  readonly every: number
  readonly n: number
}

export const cubicPlan = (m: Gradual, steps: number): CubicPlan => {
  const t0 = Math.floor(m.start * steps)
  const end = Math.max(t0, Math.floor(m.end * steps))
  return { initial: m.initial, final: m.sparsity, t0, every: m.every, n: Math.floor((end - t0) / m.every) }
}

/** The sparsity the masks have after step t (0 before t0). With n = 0 the final sparsity comes at once, at t0. */
export const sparsityAt = (p: CubicPlan, t: number): number => {
  if (t < p.t0) return 0
  if (p.n === 0) return p.final
  const progress = Math.min(1, Math.floor((t - p.t0) / p.every) / p.n)
  return p.final + (p.initial - p.final) * (1 - progress) ** 3
}

/** Whether the masks are recomputed after step t (t = 0: before the first step). */
export const isUpdateStep = (p: CubicPlan, t: number): boolean => t >= p.t0 && t <= p.t0 + p.n * p.every && (t - p.t0) % p.every === 0
