import * as vega from "vega"
import { compile, type TopLevelSpec } from "vega-lite"
import type { BandPoint } from "./curves.js"

/**
 * The report's charts, written as Vega-Lite specifications and rendered to SVG when the
 * report is made (vega runs in Node without a browser or network). Each rendered chart
 * carries its scales, so a reader (the page's tooltips, the tests) can map marks back to data.
 */
export interface Scale {
  readonly type: string
  readonly domain: ReadonlyArray<number>
  readonly range: ReadonlyArray<number>
}

export interface RenderedChart {
  readonly svg: string
  readonly x: Scale
  readonly y: Scale
}

const WIDTH = 420
const HEIGHT = 260

const scaleOf = (view: vega.View, name: string): Scale => {
  const s = view.scale(name) as unknown as { type: string; domain: () => number[]; range: () => number[] }
  return { type: s.type, domain: s.domain(), range: s.range() }
}

export const renderChart = async (spec: TopLevelSpec): Promise<RenderedChart> => {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: "none" })
  try {
    await view.runAsync()
    return { svg: await view.toSVG(), x: scaleOf(view, "x"), y: scaleOf(view, "y") }
  } finally {
    view.finalize()
  }
}

/** Four significant digits, the precision a reader compares curves at. */
const fmt = (x: number): string => (Math.abs(x) >= 1e4 || (Math.abs(x) < 1e-3 && x !== 0) ? x.toExponential(3) : x.toPrecision(4))

export interface CurveOptions {
  readonly title: string
  readonly y: string
  /** Variants in the order of the legend (and of the colours, the same in every chart). */
  readonly variants: ReadonlyArray<string>
  readonly series: ReadonlyArray<{ readonly variant: string; readonly points: ReadonlyArray<BandPoint> }>
  readonly logX: boolean
  readonly logY?: boolean
  /** Draw each point (evaluations); otherwise points are invisible hover targets for tooltips. */
  readonly visiblePoints: boolean
  /** How many points per variant carry a tooltip. */
  readonly tooltipPoints?: number
  /** Draw the min–max band of the seeds. */
  readonly band: boolean
}

/**
 * A curve per variant against tokens trained: the mean over seeds as a line, the seeds'
 * minimum to maximum as a shaded band, points with their figures as tooltips.
 */
export const curveChart = (o: CurveOptions): TopLevelSpec => {
  const rows = o.series.flatMap(({ variant, points }) => {
    const every = Math.max(1, Math.ceil(points.length / (o.tooltipPoints ?? Number.POSITIVE_INFINITY)))
    return points.map((p, i) => ({
      variant,
      tokens: p.tokens,
      mean: p.mean,
      min: p.min,
      max: p.max,
      tip: o.visiblePoints || i % every === 0 || i === points.length - 1,
      label:
        `${variant}, step ${p.step}, ${Math.round(p.tokens).toLocaleString("en")} tokens: ${o.y} ${fmt(p.mean)}` +
        (p.seeds > 1 ? ` (mean of ${p.seeds} seeds, ${fmt(p.min)} to ${fmt(p.max)})` : ""),
    }))
  })
  const x = { field: "tokens", type: "quantitative" as const, title: "tokens trained", axis: { format: "~s" }, scale: { type: o.logX ? ("log" as const) : ("linear" as const), nice: false } }
  const y = { type: "quantitative" as const, title: o.y, scale: o.logY ? { type: "log" as const } : { type: "linear" as const, zero: false } }
  const color = { field: "variant", type: "nominal" as const, title: "variant", scale: { domain: [...o.variants] } }
  return {
    title: o.title,
    width: WIDTH,
    height: HEIGHT,
    data: { values: rows },
    encoding: { x, color },
    layer: [
      ...(o.band ? [{ mark: { type: "area" as const, opacity: 0.2 }, encoding: { y: { ...y, field: "min" }, y2: { field: "max" } } }] : []),
      { mark: { type: "line" as const, strokeWidth: 1.5 }, encoding: { y: { ...y, field: "mean" } } },
      {
        transform: [{ filter: "datum.tip" }],
        mark: { type: "point" as const, filled: true, size: o.visiblePoints ? 36 : 40, opacity: o.visiblePoints ? 1 : 0 },
        encoding: { y: { ...y, field: "mean" }, description: { field: "label" } },
      },
    ],
    // The legend shows each variant's line, not its faint band.
    config: { legend: { orient: "right", symbolType: "stroke", symbolOpacity: 1, symbolStrokeWidth: 2 }, axis: { labelFontSize: 11, titleFontSize: 12 } },
  }
}

/**
 * Validation bits per byte against a figure the runs report (a pruned model's sparsity, a
 * dynamic-depth model's blocks per token): one labelled point per run, coloured by variant.
 */
export const figureChart = (o: {
  readonly figure: string
  readonly variants: ReadonlyArray<string>
  readonly runs: ReadonlyArray<{ readonly variant: string; readonly seed: number; readonly x: number; readonly bpb: number }>
}): TopLevelSpec => ({
  title: `validation bits per byte against ${o.figure}`,
  width: WIDTH,
  height: HEIGHT,
  data: { values: o.runs.map((r) => ({ ...r, label: `${r.variant}, seed ${r.seed}: ${o.figure} ${fmt(r.x)}, val bpb ${fmt(r.bpb)}` })) },
  encoding: {
    x: { field: "x", type: "quantitative", title: o.figure, scale: { zero: false, nice: false, padding: 20 } },
    y: { field: "bpb", type: "quantitative", title: "val bpb", scale: { zero: false, padding: 20 } },
    color: { field: "variant", type: "nominal", title: "variant", scale: { domain: [...o.variants] } },
  },
  layer: [
    { mark: { type: "point", filled: true, size: 60 }, encoding: { description: { field: "label" } } },
    { mark: { type: "text", align: "left", dx: 7, dy: -7, fontSize: 10 }, encoding: { text: { field: "variant" } } },
  ],
})
