/**
 * Training curves from metrics.jsonl: the tolerant, bounded reader, TensorBoard-style
 * smoothing, and the seeds of a variant pooled into a mean with a min–max band at each step.
 */
export interface MetricRow {
  readonly step: number
  readonly tokens: number
  readonly loss: number
  readonly lr?: number
  readonly gradNorm?: number
  readonly tokensPerSecond?: number
  readonly valLoss?: number
  readonly valBpb?: number
  /**
   * Training loss and gradient norm smoothed over every row up to this one (rows the reader
   * dropped to bound its memory included), by smoothing weight.
   */
  readonly smoothed: ReadonlyMap<number, { readonly loss: number; readonly gradNorm?: number }>
}

export interface ParsedMetrics {
  readonly rows: ReadonlyArray<MetricRow>
  /** Lines that were not a whole row: a torn last line while a run is writing, or damage. */
  readonly skipped: number
  /** Why the file could not be read (to the end), when it could not. */
  readonly unreadable?: string
}

export interface MetricsLimits {
  /** Smoothing weights in [0, 1) whose curves are computed while reading, over every row. */
  readonly smoothings: ReadonlyArray<number>
  /** Rows kept of each kind (training, evaluation); past it, every other one is dropped, evenly in step. */
  readonly maxRows: number
  /** A longer line is no row, and its bytes are not held. */
  readonly maxLineBytes: number
}

/**
 * TensorBoard's smoothing as a running state: an exponential moving average with weight `w`
 * in [0, 1), debiased so the first points are not pulled towards zero. Non-finite values pass
 * through unsmoothed.
 */
export const ema = (w: number): ((x: number) => number) => {
  let last = 0
  let n = 0
  return (x) => {
    if (!Number.isFinite(x)) return x
    n++
    last = last * w + (1 - w) * x
    return last / (1 - w ** n)
  }
}

const optionalFields = ["lr", "gradNorm", "tokensPerSecond", "valLoss", "valBpb"] as const

/** A metrics line's row: step, tokens and loss are numbers; the others numbers, or null (NaN) or absent (left out). */
const rowOf = (x: unknown): Omit<MetricRow, "smoothed"> | undefined => {
  const r = x as Record<string, unknown> | null
  if (typeof r !== "object" || r === null || typeof r.step !== "number" || typeof r.tokens !== "number" || typeof r.loss !== "number") return undefined
  const row: Record<string, number> = { step: r.step, tokens: r.tokens, loss: r.loss }
  for (const key of optionalFields) {
    const v = r[key]
    if (typeof v === "number") row[key] = v
    else if (v !== undefined && v !== null) return undefined
  }
  return row as unknown as Omit<MetricRow, "smoothed">
}

/**
 * Reads metrics.jsonl as it arrives, chunk by chunk, in bounded memory (a long run's file is
 * legitimately larger than a string can be): a line that is not a whole row is skipped and
 * counted; at most `maxRows` training rows are kept, halved by step whenever they overflow
 * (so seeds keep the same steps), and as many evaluations, halved likewise; the last row is
 * always kept. Smoothing runs over every row as it is read.
 */
export const metricsReader = (limits: MetricsLimits) => {
  const smoothers = limits.smoothings.filter((w) => w > 0).map((w) => ({ w, loss: ema(w), gradNorm: ema(w) }))
  let train: Array<{ i: number; row: MetricRow }> = []
  let trainStride = 1
  let evals: Array<{ i: number; row: MetricRow; n: number }> = []
  let evalStride = 1
  let evalCount = 0
  let last: { i: number; row: MetricRow } | undefined
  let index = 0
  let skipped = 0
  let pending: Buffer[] = []
  let pendingBytes = 0
  let overlong = false
  const decoder = new TextDecoder()

  const accept = (text: string) => {
    if (text.trim() === "") return
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch {
      parsed = undefined
    }
    const raw = rowOf(parsed)
    if (raw === undefined) return void skipped++
    const smoothed = new Map(
      smoothers.map((s) => [s.w, { loss: s.loss(raw.loss), ...(raw.gradNorm !== undefined && Number.isFinite(raw.gradNorm) ? { gradNorm: s.gradNorm(raw.gradNorm) } : {}) }]),
    )
    const entry = { i: index++, row: { ...raw, smoothed } }
    last = entry
    if (raw.step % trainStride === 0) train.push(entry)
    if (train.length > limits.maxRows) {
      trainStride *= 2
      train = train.filter((e) => e.row.step % trainStride === 0)
      // Steps that are not 1, 2, 3…: halve by position instead.
      if (train.length > limits.maxRows) train = train.filter((_, k) => k % 2 === 0)
    }
    if (raw.valLoss !== undefined || raw.valBpb !== undefined) {
      const n = evalCount++
      if (n % evalStride === 0) evals.push({ ...entry, n })
      if (evals.length > limits.maxRows) {
        evalStride *= 2
        evals = evals.filter((e) => e.n % evalStride === 0)
      }
    }
  }

  const endLine = (bytes: Uint8Array) => {
    const tooLong = overlong || pendingBytes + bytes.length > limits.maxLineBytes
    const whole = tooLong ? undefined : Buffer.concat([...pending, bytes])
    pending = []
    pendingBytes = 0
    overlong = false
    if (whole === undefined) skipped++
    else accept(decoder.decode(whole))
  }

  return {
    push: (chunk: Uint8Array): void => {
      let start = 0
      for (let nl = chunk.indexOf(10); nl >= 0; nl = chunk.indexOf(10, start)) {
        endLine(chunk.subarray(start, nl))
        start = nl + 1
      }
      const rest = chunk.subarray(start)
      if (overlong || rest.length === 0) return
      if (pendingBytes + rest.length > limits.maxLineBytes) {
        pending = []
        pendingBytes = 0
        overlong = true
      } else {
        pending.push(Buffer.from(rest))
        pendingBytes += rest.length
      }
    },
    done: (): ParsedMetrics => {
      if (overlong || pendingBytes > 0) endLine(new Uint8Array(0))
      const kept = new Map([...train, ...evals, ...(last ? [last] : [])].map((e) => [e.i, e.row]))
      return { rows: [...kept.entries()].sort(([a], [b]) => a - b).map(([, row]) => row), skipped }
    },
  }
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

/** One series per seed: `pick` chooses the figure (rows without it are left out). */
export const seedSeries = (
  runs: ReadonlyArray<{ readonly seed: number; readonly rows: ReadonlyArray<MetricRow> }>,
  pick: (r: MetricRow) => number | undefined,
): SeedSeries[] =>
  runs.map(({ seed, rows }) => ({
    seed,
    points: rows.flatMap((r) => {
      const value = pick(r)
      return value === undefined ? [] : [{ step: r.step, tokens: r.tokens, value }]
    }),
  }))

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
