import { formatCount } from "../../dsl/print.js"
import type { Summary } from "../train/run.js"

/** The figures of one finished run that a results table needs (a subset of summary.json). */
export interface RunResult {
  readonly variant: string
  readonly seed: number
  readonly valLoss: number
  readonly valBpb: number
  readonly tokensPerSecond: number
  readonly tokensTrained: number
  /** A pruned run's source trained on these tokens before it was pruned (its own are the fine-tune's). */
  readonly sourceTokens?: number
  readonly params: { readonly total: number; readonly nonEmbedding: number }
  /** Peak tensor memory of one optimiser step beyond the weights and optimiser state, where measured. */
  readonly stepPeakBytes?: number
  readonly extra?: Readonly<Record<string, number>>
}

/** Mean and sample standard deviation (0 for a single value). */
export const meanStd = (xs: ReadonlyArray<number>): { mean: number; std: number } => {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length
  const std = xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1)) : 0
  return { mean, std }
}

const pm = (xs: ReadonlyArray<number>, digits: number): string => {
  if (xs.some(Number.isNaN)) return "n/a"
  const { mean, std } = meanStd(xs)
  return xs.length > 1 ? `${mean.toFixed(digits)} ± ${std.toFixed(digits)}` : mean.toFixed(digits)
}

const mib = (xs: ReadonlyArray<number | undefined>): string => {
  const known = xs.filter((x): x is number => x !== undefined)
  return known.length === 0 ? "n/a" : Math.round(meanStd(known).mean / 2 ** 20).toString()
}

/**
 * A Markdown table with one row per variant: parameters, then validation loss and bits per
 * byte as mean ± standard deviation over seeds, training throughput, and a training step's
 * peak memory where it was measured.
 */
export const resultsTable = (results: ReadonlyArray<RunResult>): string => {
  const variants = [...new Set(results.map((r) => r.variant))]
  const extraKeys = [...new Set(results.flatMap((r) => Object.keys(r.extra ?? {})))]
  const memory = results.some((r) => r.stepPeakBytes !== undefined)
  const header = ["variant", "seeds", "params (total / non-emb)", "tokens", "val loss", "val bpb", ...extraKeys, "tokens/s", ...(memory ? ["step memory (MiB)"] : [])]
  const rows = variants.map((v) => {
    const rs = results.filter((r) => r.variant === v)
    const first = rs[0]!
    return [
      v,
      String(rs.length),
      `${formatCount(first.params.total)} / ${formatCount(first.params.nonEmbedding)}`,
      (first.sourceTokens === undefined ? "" : `${formatCount(first.sourceTokens)} + `) + formatCount(Math.round(meanStd(rs.map((r) => r.tokensTrained)).mean)),
      pm(rs.map((r) => r.valLoss), 4),
      pm(rs.map((r) => r.valBpb), 4),
      ...extraKeys.map((k) => pm(rs.map((r) => r.extra?.[k] ?? Number.NaN), 4)),
      // A one-shot pruned run trains on nothing, so it has no throughput.
      rs.every((r) => r.tokensTrained === 0) ? "n/a" : Math.round(meanStd(rs.map((r) => r.tokensPerSecond)).mean).toString(),
      ...(memory ? [mib(rs.map((r) => r.stepPeakBytes))] : []),
    ]
  })
  const line = (cells: ReadonlyArray<string>) => `| ${cells.join(" | ")} |`
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n")
}

/** What a results table reads of a pruned run's summary (src/prune/run.ts writes it). */
interface PruningFigures {
  readonly pruning?: { readonly sparsity: number; readonly sourceTokens: number }
}

/**
 * A run's summary as a table row: longer-sequence evaluations become bpb@L columns; a pruned
 * run adds its sparsity (the share of the source's non-embedding parameters removed) and
 * counts its source's training tokens before its own.
 */
export const resultOf = (s: Summary & PruningFigures): RunResult => ({
  ...s,
  ...(s.pruning === undefined ? {} : { sourceTokens: s.pruning.sourceTokens }),
  extra: {
    ...Object.fromEntries(Object.entries(s.lengths).map(([length, e]) => [`bpb@${length}`, e.bpb])),
    ...(s.pruning === undefined ? {} : { sparsity: s.pruning.sparsity }),
  },
})
