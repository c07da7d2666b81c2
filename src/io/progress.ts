/**
 * Progress reporting for long loops (training, evaluation, tokenising, downloading). On a
 * terminal, one bar redrawn in place with percent, current/total, loss, rate and ETA; otherwise
 * plain lines, one at each `everyPercent` boundary and in between at most one per `everyMs`, so
 * logs stay short. A bar is a scoped resource: closing its scope draws the final state and ends
 * the line (a bar that never drew anything prints nothing).
 */
import { Context, Effect, Layer, Scope } from "effect"

/** Where progress goes, and the clock it is timed with (injected so tests are deterministic). */
export class ProgressSink extends Context.Service<
  ProgressSink,
  {
    readonly isTTY: boolean
    /** Terminal width in columns (only used on a TTY). */
    readonly columns: () => number
    readonly write: (text: string) => void
    /** Milliseconds, monotonic. */
    readonly now: () => number
  }
>()("tinystories/report/ProgressSink") {
  static readonly stderr: Layer.Layer<ProgressSink> = Layer.succeed(ProgressSink, {
    isTTY: process.stderr.isTTY === true,
    columns: () => process.stderr.columns ?? 100,
    write: (text) => void process.stderr.write(text),
    now: () => performance.now(),
  })
}

export interface ProgressOptions {
  readonly label: string
  /** Total units of work (steps, batches, documents, bytes); unknown until an update gives it. */
  readonly total?: number
  /** Name of the unit, shown in the rate when no token count is given. Default "it". */
  readonly unit?: string
  /** The units are bytes, shown as KiB, MiB, GiB. */
  readonly bytes?: boolean
  /** Where `current` starts, e.g. the step a resumed run starts from. Default 0. */
  readonly start?: number
  /** Non-TTY: least time between lines other than percent boundaries. Default 10 s. */
  readonly everyMs?: number
  /** Non-TTY: a line at each multiple of this percentage. Default 10. */
  readonly everyPercent?: number
}

export interface ProgressUpdate {
  /** Units done so far, in [start, total]. */
  readonly current: number
  readonly loss?: number
  /** Cumulative tokens processed since the bar was opened; gives a tokens/s rate. */
  readonly tokens?: number
  /** The total, when it becomes known only now (a download learns its size from the response). */
  readonly total?: number
}

/** What one rendered line shows. */
export interface ProgressSnapshot {
  readonly label: string
  readonly current: number
  readonly total: number | undefined
  readonly bytes?: boolean
  readonly loss: number | undefined
  /** Units per second for `rateUnit`, undefined until measurable. */
  readonly rate: number | undefined
  readonly rateUnit: string
  readonly etaSeconds: number | undefined
}

export interface ProgressBar {
  readonly update: (update: ProgressUpdate) => Effect.Effect<void>
  /** `update` for synchronous callbacks, e.g. a per-story or per-chunk loop. */
  readonly set: (update: ProgressUpdate) => void
  /** Prints a line (e.g. evaluation results) without garbling the bar. */
  readonly log: (line: string) => Effect.Effect<void>
}

/** "42s", "3m05s", "2h07m"; "--" when unknown. */
export const formatDuration = (seconds: number | undefined): string => {
  if (seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return "--"
  const s = Math.round(seconds)
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`
  const m = Math.floor(s / 60)
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`
}

/** Three significant digits with k/M/G suffixes: "950", "12.3k", "1.20M". */
export const formatRate = (x: number): string => {
  for (const [scale, suffix] of [
    [1e9, "G"],
    [1e6, "M"],
    [1e3, "k"],
  ] as const) {
    if (Math.abs(x) >= scale * 0.9995) return `${(x / scale).toPrecision(3)}${suffix}`
  }
  return Math.abs(x) >= 99.95 ? x.toFixed(0) : x.toPrecision(3)
}

/** Binary units, three significant digits: "512 B", "12.3 KiB", "1.20 GiB". */
export const formatBytes = (n: number): string => {
  for (const [scale, suffix] of [
    [2 ** 50, "PiB"],
    [2 ** 40, "TiB"],
    [2 ** 30, "GiB"],
    [2 ** 20, "MiB"],
    [2 ** 10, "KiB"],
  ] as const) {
    if (Math.abs(n) >= scale * 0.9995) {
      const x = n / scale
      return `${Math.abs(x) >= 99.95 ? x.toFixed(0) : x.toPrecision(3)} ${suffix}`
    }
  }
  return `${n.toFixed(0)} B`
}

const percentOf = (current: number, total: number): number => (total > 0 ? (100 * current) / total : 100)

/** The text after the label and bar: "42.0% 420/1000 loss 2.345 1.23k tok/s ETA 3m05s" ("420 1.23k tok/s" without a total). */
const renderStats = (s: ProgressSnapshot): string => {
  const amount = s.bytes === true ? formatBytes : String
  const rate =
    s.bytes === true
      ? `${s.rate === undefined ? "-- B" : formatBytes(s.rate)}/s`
      : `${s.rate === undefined ? "--" : formatRate(s.rate)} ${s.rateUnit}/s`
  return [
    ...(s.total === undefined ? [amount(s.current)] : [`${percentOf(s.current, s.total).toFixed(1)}%`, `${amount(s.current)}/${amount(s.total)}`]),
    ...(s.loss === undefined ? [] : [`loss ${s.loss.toFixed(3)}`]),
    rate,
    ...(s.total === undefined ? [] : [`ETA ${formatDuration(s.etaSeconds)}`]),
  ].join(" ")
}

/** A plain progress line for logs. */
export const renderLine = (s: ProgressSnapshot): string => `${s.label} ${renderStats(s)}`

/** A terminal bar fitted to `width` columns: "label [#####.....] stats"; no bar without a total. */
export const renderBar = (s: ProgressSnapshot, width: number): string => {
  const stats = renderStats(s)
  const barWidth = width - s.label.length - stats.length - 5
  if (s.total === undefined || barWidth < 5) return `${s.label} ${stats}`.slice(0, Math.max(0, width - 1))
  const filled = Math.min(barWidth, Math.max(0, Math.floor((barWidth * percentOf(s.current, s.total)) / 100)))
  return `${s.label} [${"#".repeat(filled)}${".".repeat(barWidth - filled)}] ${stats}`
}

const ttyRedrawMs = 100

/** Opens a progress bar in the current scope; closing the scope draws the final state. */
export const progressBar = (options: ProgressOptions): Effect.Effect<ProgressBar, never, Scope.Scope | ProgressSink> =>
  Effect.gen(function* () {
    const sink = yield* ProgressSink
    const start = options.start ?? 0
    const everyMs = options.everyMs ?? 10_000
    const everyPercent = options.everyPercent ?? 10
    const startedAt = sink.now()
    let total = options.total
    let last: ProgressUpdate = { current: start }
    let lastDrawAt = -Infinity
    const bucketOf = (current: number) => (total === undefined ? -1 : Math.floor(((100 * current) / Math.max(1, total)) / everyPercent))
    let lastLineBucket = bucketOf(start)
    /** Where the last plain line stood, so closing does not repeat it. */
    let lineAt = start

    const snapshot = (u: ProgressUpdate, now: number): ProgressSnapshot => {
      const elapsed = (now - startedAt) / 1000
      const done = u.current - start
      const unitRate = elapsed > 0 && done > 0 ? done / elapsed : undefined
      const tokenRate = u.tokens !== undefined && elapsed > 0 ? u.tokens / elapsed : undefined
      return {
        label: options.label,
        current: u.current,
        total,
        bytes: options.bytes === true,
        loss: u.loss,
        rate: u.tokens !== undefined ? tokenRate : unitRate,
        rateUnit: u.tokens !== undefined ? "tok" : (options.unit ?? "it"),
        etaSeconds: unitRate === undefined || total === undefined ? undefined : (total - u.current) / unitRate,
      }
    }
    const drawTTY = (now: number) => {
      sink.write(`\r${renderBar(snapshot(last, now), sink.columns())}\x1b[K`)
      lastDrawAt = now
    }
    const printLine = (now: number) => {
      sink.write(`${renderLine(snapshot(last, now))}\n`)
      lastDrawAt = now
      lineAt = last.current
    }

    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        const now = sink.now()
        if (sink.isTTY) {
          if (lastDrawAt === -Infinity) return
          drawTTY(now)
          sink.write("\n")
        } else if (last.current !== lineAt) {
          printLine(now)
        }
      }),
    )

    const set = (u: ProgressUpdate) => {
      last = u
      total = u.total ?? total
      const now = sink.now()
      if (sink.isTTY) {
        if (now - lastDrawAt >= ttyRedrawMs || (total !== undefined && u.current >= total)) drawTTY(now)
        return
      }
      const bucket = bucketOf(u.current)
      if (bucket > lastLineBucket || now - lastDrawAt >= everyMs) {
        lastLineBucket = Math.max(lastLineBucket, bucket)
        printLine(now)
      }
    }

    const log = (line: string) =>
      Effect.sync(() => {
        if (sink.isTTY) {
          sink.write(`\r\x1b[K${line}\n`)
          drawTTY(sink.now())
        } else {
          sink.write(`${line}\n`)
        }
      })

    return { update: (u: ProgressUpdate) => Effect.sync(() => set(u)), set, log }
  })
