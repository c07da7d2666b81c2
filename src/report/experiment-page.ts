import { Result } from "effect"
import { decodeSpec, flopsPerToken, formatCount, paramCounts, printSpec } from "../../dsl/index.js"
import { totalSteps } from "../experiment/define.js"
import type { Summary } from "../experiment/summary.js"
import { curveChart, figureChart, renderChart, type RenderedChart } from "./charts.js"
import { band, type MetricRow, type MetricsLimits, seedSeries, thin } from "./curves.js"
import { esc, page, sortableTable } from "./html.js"
import { attentionSpecs } from "./pattern-picture.js"
import { formatBytes, formatDuration, formatRate } from "../io/progress.js"
import { resultOf, resultsRows, runFigures } from "./results.js"
import type { RunView } from "./runs.js"

/**
 * The report of one experiment (or any set of run directories): the results table, the
 * curves of every variant with their seeds pooled, bits per byte against the experiment's own
 * figures where its runs report them, and what each variant is and did.
 */
export interface ExperimentPageOptions {
  readonly title: string
  /** Variants in the experiment's order; others follow alphabetically. */
  readonly variantOrder: ReadonlyArray<string>
  /** The attention pattern picture (a PNG) of a spec at a context, or why there is none. */
  readonly pattern: (spec: ReturnType<typeof attentionSpecs>[number], context: number) => Buffer | string
  /** Set when the page is regenerated as runs progress: it reloads itself this often. */
  readonly reloadSeconds?: number
  readonly generatedAt: Date
  /** What could not be read of the runs (a field, a file, a whole run), each naming its file. */
  readonly warnings: ReadonlyArray<string>
}

/** Smoothing weights offered for the training curves (TensorBoard's default is 0.6). */
export const smoothings = [0, 0.6, 0.9] as const
/** Points per variant drawn on a curve; longer runs are thinned evenly. */
const MAX_POINTS = 400
/**
 * What the page needs of each metrics.jsonl: its smoothings over every row, and rows enough to
 * thin to MAX_POINTS (a run's file can outgrow memory; a longer line is no metrics row).
 */
export const metricsLimits: MetricsLimits = { smoothings, maxRows: 4096, maxLineBytes: 1 << 20 }
/** Attention pictures are measured at the model's context up to this many positions. */
const PATTERN_CONTEXT = 128

const variantsOf = (runs: ReadonlyArray<RunView>, order: ReadonlyArray<string>): string[] => {
  const present = [...new Set(runs.map((r) => r.spec.variant))]
  return [...order.filter((v) => present.includes(v)), ...present.filter((v) => !order.includes(v)).sort()]
}

const chartFigure = (name: string, caption: string, views: ReadonlyArray<{ chart: RenderedChart; smoothing?: number; x: string }>): string =>
  `<figure class="chart" data-chart="${esc(name)}">` +
  views
    .map((v) => `<div class="view" data-x="${esc(v.x)}"${v.smoothing === undefined ? "" : ` data-smoothing="${v.smoothing}"`} data-scales="${esc(JSON.stringify({ x: v.chart.x, y: v.chart.y }))}">${v.chart.svg}</div>`)
    .join("") +
  `<figcaption>${esc(caption)}</figcaption></figure>`

/** A row's figure at a smoothing weight (0: as logged). */
type Pick = (r: MetricRow, smoothing: number) => number | undefined

const curveViews = async (
  runs: ReadonlyArray<RunView>,
  variants: ReadonlyArray<string>,
  o: { title: string; y: string; pick: Pick; smoothing: ReadonlyArray<number | undefined>; visiblePoints: boolean; band: boolean; logY?: boolean },
) => {
  const views: Array<{ chart: RenderedChart; smoothing?: number; x: string }> = []
  for (const s of o.smoothing) {
    const series = variants.map((variant) => ({
      variant,
      points: thin(band(seedSeries(runs.filter((r) => r.spec.variant === variant).map((r) => ({ seed: r.spec.seed, rows: r.metrics.rows })), (row) => o.pick(row, s ?? 0))), MAX_POINTS),
    }))
    for (const x of ["linear", "log"]) {
      const spec = curveChart({ title: o.title, y: o.y, variants, series, logX: x === "log", logY: o.logY, visiblePoints: o.visiblePoints, tooltipPoints: 50, band: o.band })
      views.push({ chart: await renderChart(spec), x, ...(s === undefined ? {} : { smoothing: s }) })
    }
  }
  return views
}

/** A figure a summary lacked (NaN) reads "n/a". */
const fixed = (x: number, digits: number): string => (Number.isNaN(x) ? "n/a" : x.toFixed(digits))

/** The steps a run's spec plans, when its training section says. */
const plannedSteps = (spec: RunView["spec"]): string => {
  try {
    const steps = totalSteps(spec)
    return Number.isFinite(steps) ? String(steps) : "?"
  } catch {
    return "?"
  }
}

const seedTable = (runs: ReadonlyArray<RunView>): string => {
  const header = ["seed", "status", "val loss", "val bpb", "train loss", "wall time", "tokens/s", "step memory", "backend", "machine", "directory"]
  const rows = runs.map((r) => {
    const s: Summary | undefined = r.summary
    const last = r.metrics.rows.at(-1)
    const status = s ? "finished" : `training: step ${last?.step ?? 0} of ${plannedSteps(r.spec)}`
    return [
      String(r.spec.seed),
      status +
        (r.metrics.skipped > 0 ? ` (${r.metrics.skipped} unreadable metrics line${r.metrics.skipped > 1 ? "s" : ""} skipped)` : "") +
        (r.metrics.unreadable === undefined ? "" : ` (metrics.jsonl could not be read${r.metrics.rows.length > 0 ? " to the end" : ""})`),
      s ? fixed(s.valLoss, 4) : "",
      s ? fixed(s.valBpb, 4) + (s.evalText === undefined || s.evalText === "valid" ? "" : ` on ${s.evalText}`) : "",
      s ? fixed(s.trainLoss, 4) : last ? last.loss.toFixed(4) : "",
      s ? formatDuration(s.wallSeconds) : "",
      s ? (Number.isNaN(s.tokensPerSecond) ? "n/a" : formatRate(s.tokensPerSecond)) : last?.tokensPerSecond !== undefined ? formatRate(last.tokensPerSecond) : "",
      s?.stepPeakBytes !== undefined ? formatBytes(s.stepPeakBytes) : "n/a",
      s ? `${s.backend} (${s.backendDetail})` : "",
      s?.machine ?? "",
      r.dir,
    ]
  })
  return sortableTable(header, rows, { id: "", cellClass: (col) => (col >= header.indexOf("backend") ? "wrap" : "") })
}

const variantSection = (variant: string, runs: ReadonlyArray<RunView>, o: ExperimentPageOptions): string => {
  const first = runs[0]!
  const decoded = decodeSpec(first.spec.model)
  const model = Result.isSuccess(decoded) ? decoded.success : undefined
  const tree = model ? printSpec(model) : `the model in ${first.dir}/spec.json does not decode: ${Result.isFailure(decoded) ? decoded.failure.message : ""}`
  const counts = model ? paramCounts(model) : undefined
  const flops = model ? flopsPerToken(model) : undefined
  const patterns = model
    ? attentionSpecs(model).map((spec) => {
        const context = Math.min(model.context, PATTERN_CONTEXT)
        const png = o.pattern(spec, context)
        const { op: _op, kind, ...options } = spec as { op: string; kind: string }
        const label = `${kind} ${Object.entries(options).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(" ")}`
        return typeof png === "string"
          ? `<p class="note">${esc(label)}: no pattern picture (${esc(png)})</p>`
          : `<figure class="pattern"><img alt="attention pattern of ${esc(label)}" src="data:image/png;base64,${png.toString("base64")}"><figcaption>${esc(label)}<br>layer 0, head 0, context ${context}: black where a query (row) sees a key (column), red if it sees ahead</figcaption></figure>`
      })
    : []
  const samples = runs.filter((r) => r.summary && r.summary.sample !== "").map((r) => `<p><b>seed ${esc(String(r.spec.seed))}</b></p><blockquote>${esc(r.summary!.sample)}</blockquote>`)
  return `<section class="variant-section" id="variant-${esc(variant)}"><h2>${esc(variant)}</h2>
<div class="variant"><div>
<p>${counts ? `parameters ${formatCount(counts.total)} total, ${formatCount(counts.nonEmbedding)} non-embedding` : ""}${flops ? `; FLOPs per token ${formatCount(flops.forward)} forward, ${formatCount(flops.training)} training` : ""}</p>
<pre>${esc(tree)}</pre></div><div>${patterns.join("")}</div></div>
${seedTable(runs)}
${samples.length > 0 ? `<h3>sample${samples.length > 1 ? "s" : ""}</h3>${samples.join("")}` : ""}
</section>`
}

export const experimentPage = async (runs: ReadonlyArray<RunView>, o: ExperimentPageOptions): Promise<string> => {
  const variants = variantsOf(runs, o.variantOrder)
  const finished = runs.filter((r) => r.summary).sort((a, b) => variants.indexOf(a.spec.variant) - variants.indexOf(b.spec.variant) || a.spec.seed - b.spec.seed)
  const table = finished.length > 0 ? (() => {
    const { header, rows } = resultsRows(finished.map((r) => resultOf(r.summary!)))
    return sortableTable(header, rows, { id: "results" })
  })() : `<p class="note">No run has finished yet.</p>`

  const loss = await curveViews(runs, variants, { title: "training loss", y: "loss", pick: (r, s) => (s === 0 ? r.loss : r.smoothed.get(s)?.loss), smoothing: smoothings, visiblePoints: false, band: true })
  const bpb = await curveViews(runs, variants, { title: "validation bits per byte", y: "val bpb", pick: (r) => r.valBpb, smoothing: [undefined], visiblePoints: true, band: true })
  const lr = await curveViews(runs, variants, { title: "learning rate", y: "lr", pick: (r) => r.lr, smoothing: [undefined], visiblePoints: false, band: false })
  const grad = await curveViews(runs, variants, { title: "gradient norm (before clipping)", y: "grad norm", pick: (r, s) => (s !== 0 ? r.smoothed.get(s)?.gradNorm : r.gradNorm !== undefined && Number.isFinite(r.gradNorm) ? r.gradNorm : undefined), smoothing: smoothings, visiblePoints: false, band: true, logY: true })
  const seedsNote = "Lines: mean over seeds; band: the seeds' minimum to maximum."

  const figuresByRun = runFigures(finished.map((r) => resultOf(r.summary!)))
  const figureNames = [...new Set(figuresByRun.flatMap((f) => Object.keys(f)))]
  const figures: string[] = []
  for (const figure of figureNames) {
    const points = finished.flatMap((r, i) => {
      const x = figuresByRun[i]![figure]
      return x === undefined || !Number.isFinite(x) || !Number.isFinite(r.summary!.valBpb) ? [] : [{ variant: r.spec.variant, seed: r.spec.seed, x, bpb: r.summary!.valBpb }]
    })
    const chart = await renderChart(figureChart({ figure, variants, runs: points }))
    figures.push(chartFigure(`figure-${figure}`, `One point per run (its summary's ${figure}).`, [{ chart, x: "linear" }]))
  }

  const controls = `<div class="controls">
<label>smoothing <select data-control="smoothing">${smoothings.map((s) => `<option value="${s}"${s === 0.6 ? " selected" : ""}>${s === 0 ? "none" : s}</option>`).join("")}</select></label>
<label>token axis <select data-control="x"><option value="linear" selected>linear</option><option value="log">log</option></select></label>
</div>`
  const body = `<h1>${esc(o.title)}</h1>
<p class="note">${runs.length} run${runs.length === 1 ? "" : "s"} (${finished.length} finished), ${variants.length} variant${variants.length === 1 ? "" : "s"}; generated ${esc(o.generatedAt.toISOString().replace("T", " ").slice(0, 19))} UTC${o.reloadSeconds === undefined ? "" : `, reloads every ${o.reloadSeconds} s while the report is watched`}.</p>
${o.warnings.map((w) => `<p class="note warning">not shown: ${esc(w)}</p>`).join("\n")}
<h2>results</h2>${table}
<h2>curves</h2>${controls}
<div class="charts">
${chartFigure("loss", `${seedsNote} Smoothing is TensorBoard's debiased moving average, per seed.`, loss)}
${chartFigure("bpb", `${seedsNote} One point per evaluation.`, bpb)}
${chartFigure("lr", "Learning rate at each step.", lr)}
${chartFigure("grad", `${seedsNote} Global gradient norm before clipping, log scale.`, grad)}
</div>
${figures.length > 0 ? `<h2>bits per byte against the runs' figures</h2><div class="charts">${figures.join("")}</div>` : ""}
${variants.map((v) => variantSection(v, runs.filter((r) => r.spec.variant === v).sort((a, b) => a.spec.seed - b.spec.seed), o)).join("\n")}`
  return page({ title: o.title, body, ...(o.reloadSeconds === undefined ? {} : { reloadSeconds: o.reloadSeconds }) })
}
