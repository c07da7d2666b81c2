/**
 * Training curves from metrics.jsonl: the tolerant reader, TensorBoard-style smoothing, and
 * the seeds of a variant pooled into a mean with a min–max band at each step.
 */
export interface MetricRow {
  readonly step: number
  readonly tokens: number
  readonly loss: number
  readonly lr: number
  readonly gradNorm: number
  readonly tokensPerSecond?: number
  readonly valLoss?: number
  readonly valBpb?: number
}

export interface ParsedMetrics {
  readonly rows: ReadonlyArray<MetricRow>
  /** Lines that were not a whole row: a torn last line while a run is writing, or damage. */
  readonly skipped: number
}

const isRow = (x: unknown): x is MetricRow => {
  const r = x as Partial<MetricRow> | null
  return typeof r === "object" && r !== null && typeof r.step === "number" && typeof r.tokens === "number" && typeof r.loss === "number"
}

/** Reads metrics.jsonl text, skipping any line that is not a whole row instead of failing. */
export const parseMetrics = (text: string): ParsedMetrics => {
  const rows: MetricRow[] = []
  let skipped = 0
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue
    let parsed: unknown
    try {
      parsed = JSON.parse(line)
    } catch {
      parsed = undefined
    }
    if (isRow(parsed)) rows.push(parsed)
    else skipped++
  }
  return { rows, skipped }
}

/**
 * TensorBoard's smoothing: an exponential moving average with weight `w` in [0, 1), debiased
 * so the first points are not pulled towards zero. Non-finite values pass through unsmoothed.
 */
export const smooth = (xs: ReadonlyArray<number>, w: number): number[] => {
  if (w === 0) return [...xs]
  let last = 0
  let n = 0
  return xs.map((x) => {
    if (!Number.isFinite(x)) return x
    n++
    last = last * w + (1 - w) * x
    return last / (1 - w ** n)
  })
}

export interface SeedSeries {
  readonly seed: number
  readonly points: ReadonlyArray<{ readonly step: number; readonly tokens: number; readonly value: number }>
}

export interface BandPoint {
  readonly step: number
  /** Mean over the seeds that reached this step. */
  readonly tokens: number
  readonly mean: number
  readonly min: number
  readonly max: number
  readonly seeds: number
}

/** One series per seed: `pick` chooses the figure (rows without it are left out), smoothed per seed. */
export const seedSeries = (
  runs: ReadonlyArray<{ readonly seed: number; readonly rows: ReadonlyArray<MetricRow> }>,
  pick: (r: MetricRow) => number | undefined,
  smoothing = 0,
): SeedSeries[] =>
  runs.map(({ seed, rows }) => {
    const kept = rows.flatMap((r) => {
      const v = pick(r)
      return v === undefined ? [] : [{ step: r.step, tokens: r.tokens, value: v }]
    })
    const smoothed = smooth(kept.map((p) => p.value), smoothing)
    return { seed, points: kept.map((p, i) => ({ ...p, value: smoothed[i]! })) }
  })

/** The seeds pooled at each step they share or not: mean, min and max over those that have it. */
export const band = (series: ReadonlyArray<SeedSeries>): BandPoint[] => {
  const byStep = new Map<number, Array<{ tokens: number; value: number }>>()
  for (const s of series) for (const p of s.points) byStep.set(p.step, [...(byStep.get(p.step) ?? []), p])
  return [...byStep.entries()]
    .sort(([a], [b]) => a - b)
    .map(([step, ps]) => ({
      step,
      tokens: ps.reduce((a, p) => a + p.tokens, 0) / ps.length,
      mean: ps.reduce((a, p) => a + p.value, 0) / ps.length,
      min: Math.min(...ps.map((p) => p.value)),
      max: Math.max(...ps.map((p) => p.value)),
      seeds: ps.length,
    }))
}

/**
 * At most `limit` points, evenly spaced in index, always keeping the first and last, so a
 * long run's chart stays light; a shorter series is returned whole.
 */
export const thin = <T>(xs: ReadonlyArray<T>, limit: number): T[] => {
  if (xs.length <= limit) return [...xs]
  const picked = new Set<number>()
  for (let i = 0; i < limit; i++) picked.add(Math.round((i * (xs.length - 1)) / (limit - 1)))
  return [...picked].sort((a, b) => a - b).map((i) => xs[i]!)
}
