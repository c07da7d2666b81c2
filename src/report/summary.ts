import type { Summary } from "../experiment/summary.js"

/**
 * summary.json as the report and the results table read it. A summary is data from disk: a
 * hand edit, an older writer or a damaged file can give any field any type. A field the
 * tables show that is not what they expect is not shown (its figure reads "n/a", an
 * optional group is left out) and named in a warning; a summary that does not say which
 * variant and seed it is leaves its run out. A one-shot pruned run trains on nothing, so its
 * training loss is null (NaN in JSON): that is no fault.
 */

/** What a results table reads of a pruned run's summary (src/prune/run.ts writes it). */
export interface PruningFigures {
  readonly pruning?: { readonly sparsity: number; readonly sourceTokens: number }
}

export type CheckedSummary = Summary & PruningFigures

export type SummaryCheck =
  | { readonly _tag: "Read"; readonly summary: CheckedSummary; readonly warnings: ReadonlyArray<string> }
  | { readonly _tag: "Skipped"; readonly warning: string }

type Fields = Readonly<Record<string, unknown>>

const isObject = (x: unknown): x is Fields => typeof x === "object" && x !== null && !Array.isArray(x)
const isNumber = (x: unknown): x is number => typeof x === "number"
const shown = (x: unknown): string => (x === undefined ? "missing" : JSON.stringify(x).slice(0, 40))

/**
 * The numbers a results table reads, and those the report's run tables add: each is NaN
 * ("n/a") when absent or not a number. The report also shows the run's backend and sample.
 */
const tableFigures = ["valLoss", "valBpb", "tokensTrained", "tokensPerSecond"] as const
const pageFigures = ["trainLoss", "wallSeconds"] as const
const pageStrings = ["backend", "backendDetail", "sample"] as const

/** An object whose `keys` are all numbers. */
const numbers = (x: unknown, keys: ReadonlyArray<string>): boolean => isObject(x) && keys.every((k) => isNumber(x[k]))

/** `page`: the report's run tables also read the training loss, wall time, backend, machine and sample. */
export const checkSummary = (raw: unknown, file: string, o: { readonly page: boolean }): SummaryCheck => {
  if (!isObject(raw)) return { _tag: "Skipped", warning: `${file} is not a JSON object; its run is left out` }
  for (const [key, ok] of [["variant", typeof raw.variant === "string"], ["seed", isNumber(raw.seed)]] as const)
    if (!ok) return { _tag: "Skipped", warning: `${file}: ${key} is ${shown(raw[key])}, expected a ${key === "seed" ? "number" : "string"}; its run is left out` }
  const warnings: string[] = []
  const warn = (field: string, value: unknown, expected: string, outcome = "shown as n/a") => warnings.push(`${file}: ${field} is ${shown(value)}, expected ${expected}; ${outcome}`)
  const out: Record<string, unknown> = { ...raw }

  for (const key of [...tableFigures, ...(o.page ? pageFigures : [])]) {
    const v = raw[key]
    if (isNumber(v)) continue
    out[key] = Number.NaN
    const trainedOnNothing = key === "trainLoss" && v === null && raw.tokensTrained === 0
    if (!trainedOnNothing) warn(key, v, "a number")
  }
  if (!numbers(raw.params, ["total", "nonEmbedding"])) {
    warn("params", raw.params, "{ total, nonEmbedding } numbers")
    out.params = { total: Number.NaN, nonEmbedding: Number.NaN, embedding: Number.NaN }
  }
  for (const key of o.page ? pageStrings : []) {
    if (typeof raw[key] === "string") continue
    warn(key, raw[key], "a string", "left blank")
    out[key] = ""
  }
  if (o.page && raw.machine !== undefined && typeof raw.machine !== "string") {
    warn("machine", raw.machine, "a string", "left blank")
    delete out.machine
  }
  const optional: ReadonlyArray<[string, (x: unknown) => boolean, string]> = [
    ["stepPeakBytes", isNumber, "a number"],
    ["optimizerFlopsPerStep", isNumber, "a number"],
    ["flopsPerToken", (x) => numbers(x, ["forward", "training"]), "{ forward, training } numbers"],
    ["spent", (x) => isObject(x) && numbers(x.training, ["flopsPerToken", "blocksPerToken"]) && numbers(x.eval, ["flopsPerToken", "blocksPerToken"]), "{ training, eval } of { flopsPerToken, blocksPerToken } numbers"],
    ["pruning", (x) => numbers(x, ["sparsity", "sourceTokens"]), "{ sparsity, sourceTokens } numbers"],
    [
      "target",
      (x) =>
        isObject(x) &&
        isNumber(x.bpb) &&
        (x.reached === null || (numbers(x.reached, ["step", "valBpb", "tokens", "trainSeconds", "trainingFlops"]) && ((x.reached as Fields).optimizerFlops === undefined || isNumber((x.reached as Fields).optimizerFlops)))),
      "{ bpb, reached: null or { step, valBpb, tokens, trainSeconds, trainingFlops, optimizerFlops? } numbers }",
    ],
  ]
  for (const [key, ok, expected] of optional) {
    if (raw[key] === undefined || ok(raw[key])) continue
    warn(key, raw[key], expected, "left out")
    delete out[key]
  }
  // Left out, a bad one would read as valid.txt and be compared with valid.txt's figures.
  if (raw.evalText !== undefined && typeof raw.evalText !== "string") {
    warn("evalText", raw.evalText, "a string", "its figures are marked as on an unknown text")
    out.evalText = "unknown"
  }
  const lengths = isObject(raw.lengths) ? raw.lengths : {}
  if (raw.lengths !== undefined && !isObject(raw.lengths)) warn("lengths", raw.lengths, "an object of { loss, bpb } by length", "left out")
  out.lengths = Object.fromEntries(
    Object.entries(lengths).flatMap(([length, e]) => {
      if (isObject(e) && isNumber(e.bpb)) return [[length, e]]
      warn(`lengths[${JSON.stringify(length)}]`, e, "{ loss, bpb } numbers", "left out")
      return []
    }),
  )
  return { _tag: "Read", summary: out as unknown as CheckedSummary, warnings }
}
