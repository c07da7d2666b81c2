import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import {
  type ProgressSnapshot,
  ProgressSink,
  formatBytes,
  formatDuration,
  formatRate,
  progressBar,
  renderBar,
  renderLine,
} from "../../src/io/progress.js"

const snapshot: ProgressSnapshot = {
  label: "train",
  current: 420,
  total: 1000,
  loss: 2.34567,
  rate: 12345,
  rateUnit: "tok",
  etaSeconds: 185,
}

describe("formatting", () => {
  it("formats durations", () => {
    expect([0, 42.4, 59.6, 185, 3599, 7620, 90_000].map(formatDuration)).toEqual([
      "0s",
      "42s",
      "1m00s",
      "3m05s",
      "59m59s",
      "2h07m",
      "25h00m",
    ])
    expect([undefined, Infinity, NaN, -1].map(formatDuration)).toEqual(["--", "--", "--", "--"])
  })

  it("formats rates with three significant digits", () => {
    expect([0.5, 12.34, 950, 999.96, 12_345, 1_204_000, 3.2e9].map(formatRate)).toEqual([
      "0.500",
      "12.3",
      "950",
      "1.00k",
      "12.3k",
      "1.20M",
      "3.20G",
    ])
  })

  it("formats byte counts in binary units", () => {
    expect([0, 512, 1023.4, 1023.6, 12_345, 1000 * 1024, 1.2 * 2 ** 30].map(formatBytes)).toEqual([
      "0 B",
      "512 B",
      "1023 B",
      "1.00 KiB",
      "12.1 KiB",
      "1000 KiB",
      "1.20 GiB",
    ])
  })

  it("renders a plain line and a bar fitted to the width", () => {
    expect(renderLine(snapshot)).toBe("train 42.0% 420/1000 loss 2.346 12.3k tok/s ETA 3m05s")
    const bar = renderBar(snapshot, 80)
    // 80 − "train".length (5) − stats (47) − 5 = 23 cells, 42% of them filled = 9; one column stays free.
    expect(bar).toBe(`train [${"#".repeat(9)}${".".repeat(14)}] 42.0% 420/1000 loss 2.346 12.3k tok/s ETA 3m05s`)
    expect(bar.length).toBe(79)
    expect(renderBar({ ...snapshot, loss: undefined, rate: undefined, etaSeconds: undefined }, 20)).toBe("train 42.0% 420/100")
  })

  it("renders bytes, and without a total neither percent, bar nor ETA", () => {
    const bytes = { ...snapshot, current: 3 * 2 ** 20, total: 12 * 2 ** 20, loss: undefined, rate: 1.5 * 2 ** 20, bytes: true }
    expect(renderLine(bytes)).toBe("train 25.0% 3.00 MiB/12.0 MiB 1.50 MiB/s ETA 3m05s")
    expect(renderBar({ ...bytes, total: undefined }, 80)).toBe("train 3.00 MiB 1.50 MiB/s")
    expect(renderLine({ ...bytes, total: undefined, rate: undefined })).toBe("train 3.00 MiB -- B/s")
  })
})

const fakeSink = (isTTY: boolean) => {
  const out: string[] = []
  const clock = { t: 0 }
  const sink = { isTTY, columns: () => 60, write: (s: string) => void out.push(s), now: () => clock.t }
  const run = <A>(effect: Effect.Effect<A, never, ProgressSink | import("effect").Scope.Scope>) =>
    Effect.runSync(Effect.provideService(Effect.scoped(effect), ProgressSink, sink))
  return { out, clock, run }
}

describe("progressBar", () => {
  it("without a TTY prints throttled plain lines: percent boundaries, at most one per interval between", () => {
    const { out, clock, run } = fakeSink(false)
    run(
      Effect.gen(function* () {
        const bar = yield* progressBar({ label: "eval", total: 100, unit: "batch", everyMs: 5000, everyPercent: 25 })
        for (let i = 1; i <= 100; i++) {
          clock.t = i * 200 // 5 batches/s, 20 s in all
          yield* bar.update({ current: i })
        }
        yield* bar.log("valLoss 1.234")
      }),
    )
    expect(out).toEqual([
      "eval 1.0% 1/100 5.00 batch/s ETA 20s\n", // the first update: 99 left at 5/s
      "eval 25.0% 25/100 5.00 batch/s ETA 15s\n",
      "eval 50.0% 50/100 5.00 batch/s ETA 10s\n",
      "eval 75.0% 75/100 5.00 batch/s ETA 5s\n",
      "eval 100.0% 100/100 5.00 batch/s ETA 0s\n",
      "valLoss 1.234\n",
    ])
  })

  it("without a TTY adds time-based lines for slow loops and a final line on close", () => {
    const { out, clock, run } = fakeSink(false)
    run(
      Effect.gen(function* () {
        const bar = yield* progressBar({ label: "train", total: 1000, start: 500, everyMs: 10_000, everyPercent: 50 })
        for (const [t, current] of [
          [1000, 501],
          [6000, 506],
          [12_000, 512],
          [13_000, 513],
        ] as const) {
          clock.t = t
          yield* bar.update({ current, loss: 3.5, tokens: (current - 500) * 1000 })
        }
        clock.t = 14_000
        yield* bar.update({ current: 514, loss: 3.25, tokens: 14_000 })
      }),
    )
    expect(out).toEqual([
      "train 50.1% 501/1000 loss 3.500 1.00k tok/s ETA 8m19s\n",
      "train 51.2% 512/1000 loss 3.500 1.00k tok/s ETA 8m08s\n",
      "train 51.4% 514/1000 loss 3.250 1.00k tok/s ETA 8m06s\n",
    ])
  })

  it("on a TTY redraws one line in place and ends it on close", () => {
    const { out, clock, run } = fakeSink(true)
    run(
      Effect.gen(function* () {
        const bar = yield* progressBar({ label: "tok", total: 10, unit: "doc" })
        clock.t = 1000
        yield* bar.update({ current: 1 })
        clock.t = 1050 // within the redraw interval: not drawn
        yield* bar.update({ current: 2 })
        clock.t = 2000
        yield* bar.update({ current: 4 })
        yield* bar.log("note")
      }),
    )
    // 60 − "tok" (3) − stats (28) − 5 = 24 cells.
    const at1 = `\rtok [##${".".repeat(22)}] 10.0% 1/10 1.00 doc/s ETA 9s\x1b[K`
    const at4 = `\rtok [${"#".repeat(9)}${".".repeat(15)}] 40.0% 4/10 2.00 doc/s ETA 3s\x1b[K`
    expect(out).toEqual([at1, at4, "\r\x1b[Knote\n", at4, at4, "\n"])
  })

  it("takes synchronous updates and a total learnt late; a bar that never drew prints nothing", () => {
    const { out, clock, run } = fakeSink(false)
    run(
      Effect.gen(function* () {
        const bar = yield* progressBar({ label: "get", bytes: true, everyMs: 5000, everyPercent: 50 })
        clock.t = 1000
        bar.set({ current: 0 })
        clock.t = 2000
        bar.set({ current: 2048, total: 4096 })
        clock.t = 3000
        bar.set({ current: 3072 })
        clock.t = 4000
        bar.set({ current: 4096 })
      }),
    )
    expect(out).toEqual([
      "get 0 B -- B/s\n",
      "get 50.0% 2.00 KiB/4.00 KiB 1.00 KiB/s ETA 2s\n",
      "get 100.0% 4.00 KiB/4.00 KiB 1.00 KiB/s ETA 0s\n",
    ])
    const tty = fakeSink(true)
    tty.run(Effect.asVoid(progressBar({ label: "idle", total: 10 })))
    expect(tty.out).toEqual([])
  })
})
