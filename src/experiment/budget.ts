import { Schema } from "effect"
import { NonNegativeInt, PositiveInt, PositiveNumber } from "../../dsl/fields.js"

/**
 * Tokens or optimiser steps; `steps: 0` trains nothing (a one-shot pruned run is evaluated as
 * pruned). With `bpb`, the run also stops at the first periodic evaluation (every `eval.every`
 * steps) whose validation bits per byte is at most `bpb`, and its summary records when that
 * was: a speedrun's budget, tokens or steps being the most it may spend.
 */
const target = { bpb: Schema.optionalKey(PositiveNumber) }
export const BudgetSchema = Schema.Union([Schema.Struct({ tokens: PositiveInt, ...target }), Schema.Struct({ steps: NonNegativeInt, ...target })])
export type Budget = typeof BudgetSchema.Type

/** The budget with its cap replaced (`--steps`, `--tokens`), its target kept. */
export const withCap = (budget: Budget, cap: { readonly steps: number } | { readonly tokens: number }): Budget => ({
  ...cap,
  ...(budget.bpb === undefined ? {} : { bpb: budget.bpb }),
})

/** One line for listings; `evaluated` names the text the target is checked on ("val", "tune"). */
export const describeBudget = (b: Budget, evaluated = "val"): string =>
  `${"tokens" in b ? `${b.tokens.toLocaleString("en-US")} tokens` : `${b.steps} steps`}${b.bpb === undefined ? "" : `, or until ${evaluated} bpb ≤ ${b.bpb}`}`
