import { formatCount } from "../../dsl/print.js"
import type { Spent, Summary } from "../experiment/summary.js"
import type { PruningFigures } from "./summary.js"

/** The figures of one finished run that a results table needs (a subset of summary.json). */
export interface RunResult {
  readonly variant: string
  readonly seed: number
  readonly valLoss: number
  readonly valBpb: number
  /** The text valLoss and valBpb were measured on (Summary.evalText); absent: valid.txt. */
  readonly evalText?: string
  readonly tokensPerSecond: number
  readonly tokensTrained: number
  /** A pruned run's source trained on these tokens before it was pruned (its own are the fine-tune's). */
  readonly sourceTokens?: number
  readonly params: { readonly total: number; readonly nonEmbedding: number }
  /** Peak tensor memory of one optimiser step beyond the weights and optimiser state, where measured. */
  readonly stepPeakBytes?: number
  /** Nominal FLOPs per token, and what was spent (summaries written before it was recorded lack it). */
  readonly flopsPerToken?: { readonly forward: number; readonly training: number }
  readonly spent?: { readonly training: Spent; readonly eval: Spent }
  readonly extra?: Readonly<Record<string, number>>
}

/** Mean and sample standard deviation (0 for a single value). */
export const meanStd = (xs: ReadonlyArray<number>): { mean: number; std: number } => {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length
  const std = xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1)) : 0
  return { mean, std }
}

/** A figure a summary lacked (NaN) reads "n/a". */
const fixed = (x: number, digits: number): string => (Number.isNaN(x) ? "n/a" : x.toFixed(digits))
const count = (x: number): string => (Number.isNaN(x) ? "n/a" : formatCount(x))

const pm = (xs: ReadonlyArray<number>, digits: number): string => {
  if (xs.some(Number.isNaN)) return "n/a"
  const { mean, std } = meanStd(xs)
  return xs.length > 1 ? `${mean.toFixed(digits)} ± ${std.toFixed(digits)}` : mean.toFixed(digits)
}

/** An extra column's cell: the speedrun's tokens to target as a count, its FLOPs (the model's, the optimiser's) as powers of ten, seconds to a tenth, blocks to two digits, the rest to four. */
const extraCell = (column: string, xs: ReadonlyArray<number>): string => {
  if (xs.some(Number.isNaN)) return "n/a"
  const one = (x: number): string =>
    column === "tokensToTarget" ? formatCount(x) : column === "flopsToTarget" || column === "optimizerFlopsToTarget" ? x.toExponential(3) : x.toFixed(column === "blocks/token" ? 2 : column === "secondsToTarget" ? 1 : 4)
  const { mean, std } = meanStd(xs)
  return xs.length > 1 ? `${one(mean)} ± ${one(std)}` : one(mean)
}

const mib = (xs: ReadonlyArray<number | undefined>): string => {
  const known = xs.filter((x): x is number => x !== undefined)
  return known.length === 0 ? "n/a" : Math.round(meanStd(known).mean / 2 ** 20).toString()
}

/** A run that trained on something (a one-shot pruned run trains on nothing, so it spent no training compute). */
const trained = (r: RunResult): boolean => r.tokensTrained > 0

/** Whether a run spent other than its nominal compute (a depth policy skipped blocks or tokens, or added exit heads). */
const dynamic = (r: RunResult): boolean =>
  r.spent !== undefined &&
  r.flopsPerToken !== undefined &&
  (r.spent.eval.flopsPerToken !== r.flopsPerToken.forward || (trained(r) && r.spent.training.flopsPerToken !== r.flopsPerToken.training))

/** The compute columns: blocks per token and MFLOPs per token spent in evaluation and in training. */
const spentColumns = (r: RunResult): Record<string, number> => ({
  "blocks/token": r.spent?.eval.blocksPerToken ?? Number.NaN,
  "eval MFLOP/token": (r.spent?.eval.flopsPerToken ?? Number.NaN) / 1e6,
  "train MFLOP/token": trained(r) ? (r.spent?.training.flopsPerToken ?? Number.NaN) / 1e6 : Number.NaN,
})

const VALID = "valid"
const textOf = (r: RunResult): string => r.evalText ?? VALID

/**
 * One row per variant: parameters, then validation loss and bits per byte as mean ± standard
 * deviation over seeds (and each seed's bits per byte, in seed order, when some variant has
 * several), training throughput, and a training step's peak memory where it was measured.
 * When some run spent other than its nominal compute (a depth policy), every row also shows
 * the blocks and FLOPs per token it spent. Figures on other text than valid.txt (a `tune`
 * split) say so in their headers; when the runs were evaluated on different texts, each
 * variant has a row per text, never one mean of both, and an "evaluated on" column.
 */
export const resultsRows = (results: ReadonlyArray<RunResult>): { header: string[]; rows: string[][] } => {
  const texts = [...new Set(results.map(textOf))]
  const mixed = texts.length > 1
  const groups = [...new Set(results.map((r) => r.variant))].flatMap((v) =>
    texts.flatMap((text) => {
      const rs = results.filter((r) => r.variant === v && textOf(r) === text)
      return rs.length === 0 ? [] : [{ variant: v, text, rs }]
    }),
  )
  const compute = results.some(dynamic)
  const extraOf = (r: RunResult) => ({ ...r.extra, ...(compute ? spentColumns(r) : {}) })
  const extraKeys = [...new Set(results.flatMap((r) => Object.keys(extraOf(r))))]
  const memory = results.some((r) => r.stepPeakBytes !== undefined)
  const perSeed = groups.some((g) => g.rs.length > 1)
  const figure = (name: string) => (mixed ? name : texts[0] === VALID ? `val ${name}` : `${name} on ${texts[0]}`)
  const header = [
    "variant",
    "seeds",
    ...(mixed ? ["evaluated on"] : []),
    "params (total / non-emb)",
    "tokens",
    figure("loss"),
    figure("bpb"),
    ...(perSeed ? [figure("bpb per seed")] : []),
    ...extraKeys,
    "tokens/s",
    ...(memory ? ["step memory (MiB)"] : []),
  ]
  const rows = groups.map(({ variant: v, text, rs }) => {
    const first = rs[0]!
    return [
      v,
      String(rs.length),
      ...(mixed ? [text] : []),
      `${count(first.params.total)} / ${count(first.params.nonEmbedding)}`,
      (first.sourceTokens === undefined ? "" : `${count(first.sourceTokens)} + `) + count(Math.round(meanStd(rs.map((r) => r.tokensTrained)).mean)),
      pm(rs.map((r) => r.valLoss), 4),
      pm(rs.map((r) => r.valBpb), 4),
      ...(perSeed ? [[...rs].sort((a, b) => a.seed - b.seed).map((r) => fixed(r.valBpb, 4)).join(", ")] : []),
      ...extraKeys.map((k) => extraCell(k, rs.map((r) => (extraOf(r) as Readonly<Record<string, number>>)[k] ?? Number.NaN))),
      // A one-shot pruned run trains on nothing, so it has no throughput.
      !rs.some(trained) ? "n/a" : fixed(Math.round(meanStd(rs.map((r) => r.tokensPerSecond)).mean), 0),
      ...(memory ? [mib(rs.map((r) => r.stepPeakBytes))] : []),
    ]
  })
  return { header, rows }
}

export const markdownTable = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const line = (cells: ReadonlyArray<string>) => `| ${cells.join(" | ")} |`
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n")
}

/**
 * The figures of each run that a chart of bpb against them shows: an experiment's own (a pruned
 * run's sparsity, say) and, when some run spent other than its nominal compute, the blocks and
 * FLOPs per token each spent. Longer-sequence bpb columns are left out.
 */
export const runFigures = (results: ReadonlyArray<RunResult>): Array<Record<string, number>> => {
  const compute = results.some(dynamic)
  return results.map((r) => ({
    ...Object.fromEntries(Object.entries(r.extra ?? {}).filter(([k]) => !k.startsWith("bpb@"))),
    ...(compute ? spentColumns(r) : {}),
  }))
}

/** The rows as a Markdown table. */
export const resultsTable = (results: ReadonlyArray<RunResult>): string => {
  const { header, rows } = resultsRows(results)
  return markdownTable(header, rows)
}

/** The numeric fields every summary.json has; any other top-level number is a figure of its experiment. */
const standardNumbers: ReadonlyArray<keyof Summary> = [
  "seed", "valLoss", "valBpb", "valTokens", "trainLoss", "tokenBudget", "tokensTrained", "steps", "wallSeconds", "trainSeconds", "tokensPerSecond", "stepPeakBytes", "optimizerFlopsPerStep",
]

/**
 * Figures an experiment adds to its summaries beyond the standard ones (a dynamic-depth
 * model's `blocksPerToken`, say), by name.
 */
const extraFigures = (s: Summary): Record<string, number> =>
  Object.fromEntries(
    Object.entries(s).filter(([k, v]) => typeof v === "number" && Number.isFinite(v) && !(standardNumbers as ReadonlyArray<string>).includes(k)) as Array<[string, number]>,
  )

/**
 * A run's summary as a table row: longer-sequence evaluations become bpb@L columns, then the
 * experiment's own figures; a pruned run adds its sparsity (the share of the source's
 * non-embedding parameters removed) and counts its source's training tokens before its own.
 */
export const resultOf = (s: Summary & PruningFigures): RunResult => ({
  ...s,
  ...(s.pruning === undefined ? {} : { sourceTokens: s.pruning.sourceTokens }),
  extra: {
    ...Object.fromEntries(Object.entries(s.lengths).map(([length, e]) => [`bpb@${length}`, e.bpb])),
    ...extraFigures(s),
    ...(s.pruning === undefined ? {} : { sparsity: s.pruning.sparsity }),
    ...(s.target?.reached ? { secondsToTarget: s.target.reached.trainSeconds, tokensToTarget: s.target.reached.tokens, flopsToTarget: s.target.reached.trainingFlops } : {}),
    ...(s.target?.reached?.optimizerFlops ? { optimizerFlopsToTarget: s.target.reached.optimizerFlops } : {}),
  },
})

/** What a run with a target says of it when it finishes (the target on held-out training stories says so). */
export const targetLine = (target: NonNullable<Summary["target"]>, evalText = VALID): string => {
  const r = target.reached
  const bpb = evalText === VALID ? "val bpb" : `bpb on ${evalText}`
  return r === null
    ? `target ${bpb} ${target.bpb}: not reached within the budget`
    : `target ${bpb} ${target.bpb}: reached at step ${r.step} (${bpb} ${r.valBpb.toFixed(4)}) after ${r.trainSeconds.toFixed(1)} s of training, ${formatCount(r.tokens)} tokens, ${r.trainingFlops.toExponential(3)} training FLOPs` +
      (r.optimizerFlops ? ` and ${r.optimizerFlops.toExponential(3)} of the optimiser's` : "")
}
