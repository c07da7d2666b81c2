import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { Browser, Page } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { root, command } from "../cli/process.js"
import { launchChromium } from "./browser.js"
import { makeTinyRuns, tinyRunDir, tinySeeds, tinyVariants } from "./tiny-runs.js"

/**
 * The report as a reader sees it: real tiny runs (2 variants × 2 seeds), the report command
 * run as a user runs it, and the page opened in headless Chromium. The curves are read back
 * from the drawn SVG (mark positions mapped through the chart's scales) and compared with
 * the runs' metrics.jsonl.
 */
interface Row { step: number; tokens: number; loss: number; lr: number; gradNorm: number; valBpb?: number }
interface Scale { type: string; domain: number[]; range: number[] }

const artifacts = join(root, "test-artifacts")
let folder: string
let browser: Browser
const errors: string[] = []
const requests: string[] = []

const metricsOf = (variant: string, seed: number): Row[] =>
  readFileSync(join(tinyRunDir(folder, variant, seed), "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Row)
const summaryOf = (variant: string, seed: number) => JSON.parse(readFileSync(join(tinyRunDir(folder, variant, seed), "summary.json"), "utf8")) as { valBpb: number }

/** Reference statistics over seeds, computed directly from metrics.jsonl. */
const reference = (variant: string, pick: (r: Row) => number | undefined, smoothing = 0) => {
  const perSeed = tinySeeds.map((s) => {
    const rows = metricsOf(variant, s).filter((r) => pick(r) !== undefined)
    // TensorBoard's debiased exponential moving average, written out step by step.
    let acc = 0
    return rows.map((r, i) => {
      acc = smoothing * acc + (1 - smoothing) * pick(r)!
      return { step: r.step, tokens: r.tokens, value: smoothing === 0 ? pick(r)! : acc / (1 - smoothing ** (i + 1)) }
    })
  })
  return perSeed[0]!.map((p, i) => {
    const vs = perSeed.map((s) => s[i]!)
    expect(vs.every((v) => v.step === p.step)).toBe(true)
    const values = vs.map((v) => v.value)
    return { step: p.step, tokens: vs.reduce((a, v) => a + v.tokens, 0) / vs.length, mean: values.reduce((a, b) => a + b, 0) / values.length, min: Math.min(...values), max: Math.max(...values) }
  })
}

const invert = (s: Scale, px: number): number => {
  const t = (px - s.range[0]!) / (s.range[1]! - s.range[0]!)
  const [d0, d1] = s.domain as [number, number]
  return s.type === "log" ? Math.exp(Math.log(d0) + t * (Math.log(d1) - Math.log(d0))) : d0 + t * (d1 - d0)
}

/** What the visible rendering of a chart draws, in data units. */
const drawn = async (page: Page, chart: string) =>
  page.evaluate((name) => {
    const view = [...document.querySelectorAll(`figure[data-chart="${name}"] .view`)].find((v) => !(v as HTMLElement).hidden) as HTMLElement
    const pairs = (d: string) => [...d.matchAll(/[ML](-?[\d.e+-]+),(-?[\d.e+-]+)/g)].map((m) => [Number(m[1]), Number(m[2])] as [number, number])
    const variantOf = (label: string) => /variant: ([\w-]+)/.exec(label)?.[1] ?? /^([\w-]+),/.exec(label)?.[1] ?? ""
    const marks = (role: string) => [...view.querySelectorAll(`[aria-roledescription="${role}"]`)]
    return {
      visibleViews: [...document.querySelectorAll(`figure[data-chart="${name}"] .view`)].filter((v) => !(v as HTMLElement).hidden).length,
      scales: JSON.parse(view.dataset.scales!) as { x: Scale; y: Scale },
      lines: marks("line mark").map((m) => ({ variant: variantOf(m.getAttribute("aria-label")!), points: pairs(m.getAttribute("d")!) })),
      areas: marks("area mark").map((m) => ({ variant: variantOf(m.getAttribute("aria-label")!), points: pairs(m.getAttribute("d")!) })),
      points: marks("point").map((m) => {
        const t = /translate\(([^,]+),([^)]+)\)/.exec(m.getAttribute("transform")!)!
        return { variant: variantOf(m.getAttribute("aria-label")!), label: m.getAttribute("aria-label")!, x: Number(t[1]), y: Number(t[2]) }
      }),
      legend: [...view.querySelectorAll(".role-legend-label text")].map((t) => t.textContent),
    }
  }, chart)

/** The chart draws `expected` per variant: exact points (full-precision positions), line and band to the SVG's 3 decimals. */
const expectCurves = async (page: Page, chart: string, pick: (r: Row) => number | undefined, o: { smoothing?: number; band: boolean }) => {
  const d = await drawn(page, chart)
  expect(d.visibleViews).toBe(1)
  expect(d.legend).toEqual([...tinyVariants])
  expect(d.lines.map((l) => l.variant).sort()).toEqual([...tinyVariants])
  expect(d.areas.length).toBe(o.band ? tinyVariants.length : 0)
  const pixel = (s: Scale) => Math.abs(s.domain[1]! - s.domain[0]!) / Math.abs(s.range[1]! - s.range[0]!)
  for (const variant of tinyVariants) {
    const ref = reference(variant, pick, o.smoothing)
    const points = d.points.filter((p) => p.variant === variant)
    expect(points.length).toBe(ref.length)
    points.forEach((p, i) => {
      expect(invert(d.scales.x, p.x)).toBeCloseTo(ref[i]!.tokens, 6)
      expect(Math.abs(invert(d.scales.y, p.y) - ref[i]!.mean)).toBeLessThan(1e-9 * Math.max(1, Math.abs(ref[i]!.mean)))
    })
    const line = d.lines.find((l) => l.variant === variant)!.points
    expect(line.length).toBe(ref.length)
    line.forEach(([, y], i) => expect(Math.abs(invert(d.scales.y, y) - ref[i]!.mean)).toBeLessThan(0.001 * (d.scales.y.type === "log" ? ref[i]!.mean : pixel(d.scales.y))))
    if (o.band) {
      const area = d.areas.find((a) => a.variant === variant)!.points
      const upper = area.slice(0, ref.length)
      const lower = area.slice(ref.length).reverse()
      // Vega draws the band from y (min) forward and back along y2 (max).
      upper.forEach(([, y], i) => expect(Math.abs(invert(d.scales.y, y) - ref[i]!.min)).toBeLessThan(0.001 * (d.scales.y.type === "log" ? ref[i]!.min : pixel(d.scales.y))))
      lower.forEach(([, y], i) => expect(Math.abs(invert(d.scales.y, y) - ref[i]!.max)).toBeLessThan(0.001 * (d.scales.y.type === "log" ? ref[i]!.max : pixel(d.scales.y))))
    }
  }
  return d
}

const report = async (args: string[]) => {
  const r = await command("src/cli/report.ts", args, { TINYSTORIES_RUNS: folder }).done
  expect(r.code, r.stderr).toBe(0)
  return r.stdout.trim()
}

const open = async (file: string): Promise<Page> => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
  page.on("console", (m) => m.type() === "error" && errors.push(`${file}: ${m.text()}`))
  page.on("pageerror", (e) => errors.push(`${file}: ${e.message}`))
  page.on("request", (r) => !/^(file|data):/.test(r.url()) && requests.push(r.url()))
  await page.goto(`file://${file}`)
  return page
}

describe("npm run report", { timeout: 240_000 }, () => {
  beforeAll(async () => {
    folder = mkdtempSync(join(tmpdir(), "report-test-"))
    await makeTinyRuns(folder)
    browser = await launchChromium()
  })
  afterAll(async () => {
    await browser?.close()
  })

  it("draws every variant's curves from metrics.jsonl, sorts its table, and logs no error", async () => {
    const file = await report(["tiny"])
    expect(file).toBe(join(folder, "report", "tiny.html"))
    const html = readFileSync(file, "utf8")
    // Self-contained: nothing to fetch when viewed.
    expect(html).not.toMatch(/<script[^>]+src=|<link[^>]+href=|<img[^>]+src="(?!data:)/)
    const page = await open(file)

    // Every chart rendered one view, with one line per variant.
    for (const chart of ["loss", "bpb", "lr", "grad"]) expect((await drawn(page, chart)).lines.length).toBe(tinyVariants.length)
    expect(await page.locator("figure.chart svg").count()).toBe(2 * 3 + 2 + 2 + 2 * 3)

    await page.selectOption("[data-control=smoothing]", "0")
    await expectCurves(page, "loss", (r) => r.loss, { band: true })
    await expectCurves(page, "bpb", (r) => r.valBpb, { band: true })
    await expectCurves(page, "lr", (r) => r.lr, { band: false })
    await expectCurves(page, "grad", (r) => r.gradNorm, { band: true })
    await page.selectOption("[data-control=smoothing]", "0.9")
    await expectCurves(page, "loss", (r) => r.loss, { band: true, smoothing: 0.9 })
    await page.selectOption("[data-control=x]", "log")
    const log = await expectCurves(page, "bpb", (r) => r.valBpb, { band: true })
    expect(log.scales.x.type).toBe("log")

    // A tooltip names the point under the pointer.
    const point = page.locator('figure[data-chart="bpb"] .view:not([hidden]) [aria-roledescription="point"]').first()
    await point.hover({ force: true })
    await expect.poll(() => page.locator("#tooltip").textContent()).toMatch(/^learned, step 2, \d+ tokens: val bpb \d\.\d{3} \(mean of 2 seeds/)

    // The results table sorts by a column, then in reverse.
    const bpbColumn = async () => page.locator("#results tbody tr").evaluateAll((rows) => rows.map((r) => (r as HTMLTableRowElement).cells[0]!.textContent + " " + (r as HTMLTableRowElement).cells[5]!.textContent))
    const means = tinyVariants.map((v) => ({ v, bpb: tinySeeds.reduce((a, s) => a + summaryOf(v, s).valBpb, 0) / tinySeeds.length }))
    const ascending = [...means].sort((a, b) => a.bpb - b.bpb).map((m) => m.v)
    await page.locator("#results th", { hasText: "val bpb" }).filter({ hasNotText: "per seed" }).click()
    expect((await bpbColumn()).map((r) => r.split(" ")[0])).toEqual(ascending)
    await page.locator("#results th", { hasText: "val bpb" }).filter({ hasNotText: "per seed" }).click()
    expect((await bpbColumn()).map((r) => r.split(" ")[0])).toEqual([...ascending].reverse())
    await page.locator("#results th", { hasText: "variant" }).click()
    expect((await bpbColumn()).map((r) => r.split(" ")[0])).toEqual([...tinyVariants].sort())

    // Each variant shows its model, its attention pattern and its samples.
    for (const v of tinyVariants) {
      const section = page.locator(`#variant-${v}`)
      expect(await section.locator("pre").textContent()).toMatch(/^decoder vocab=17 width=16 context=8/)
      expect(await section.locator(".pattern img").evaluate((img) => (img as HTMLImageElement).naturalWidth)).toBe(8)
      expect(await section.locator("blockquote").count()).toBe(2)
    }

    mkdirSync(artifacts, { recursive: true })
    await page.selectOption("[data-control=x]", "linear")
    await page.screenshot({ path: join(artifacts, "report.png"), fullPage: true })
    console.log(`screenshot: ${join(artifacts, "report.png")}`)
    expect(errors).toEqual([])
    expect(requests).toEqual([])
  })

  it("plots bits per byte against figures the summaries carry (sparsity, blocks per token)", async () => {
    const augmented = mkdtempSync(join(tmpdir(), "report-figures-"))
    cpSync(join(folder, "tiny"), join(augmented, "tiny"), { recursive: true })
    const figures = new Map<string, { sparsity: number; blocksPerToken: number; valBpb: number }>()
    tinyVariants.forEach((v, i) =>
      tinySeeds.forEach((s) => {
        const file = join(augmented, "tiny", v, `seed${s}`, "summary.json")
        const summary = JSON.parse(readFileSync(file, "utf8"))
        const extra = { sparsity: 0.25 * (i + 1), blocksPerToken: 1.5 + i + s / 10 }
        writeFileSync(file, JSON.stringify({ ...summary, ...extra }))
        figures.set(`${v}, seed ${s}`, { ...extra, valBpb: summary.valBpb })
      }),
    )
    const file = await report([join(augmented, "tiny"), "--out", join(augmented, "figures.html")])
    const page = await open(file)
    for (const [figure, key] of [["sparsity", "sparsity"], ["blocksPerToken", "blocksPerToken"]] as const) {
      const d = await drawn(page, `figure-${figure}`)
      expect(d.points.length).toBe(tinyVariants.length * tinySeeds.length)
      for (const p of d.points) {
        const run = figures.get(/^([\w-]+, seed \d+)/.exec(p.label)![1]!)!
        expect(invert(d.scales.x, p.x)).toBeCloseTo(run[key], 9)
        expect(invert(d.scales.y, p.y)).toBeCloseTo(run.valBpb, 9)
      }
    }
    // The figures are columns of the results table too.
    const header = await page.locator("#results thead th").allTextContents()
    expect(header).toEqual(expect.arrayContaining(["bpb@16", "sparsity", "blocksPerToken"]))
    expect(errors).toEqual([])
  })

  it("--watch regenerates the page as a run writes metrics (a torn last line included), and the page reloads itself", async () => {
    const live = mkdtempSync(join(tmpdir(), "report-watch-"))
    cpSync(join(folder, "tiny"), join(live, "tiny"), { recursive: true })
    const dir = join(live, "tiny", "rope", "seed2")
    rmSync(join(dir, "summary.json"))
    const rows = readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n")
    writeFileSync(join(dir, "metrics.jsonl"), rows.slice(0, 4).join("\n") + "\n")
    const out = join(live, "live.html")
    const watcher = command("src/cli/report.ts", [join(live, "tiny"), "--out", out, "--watch", "--interval", "1"], { TINYSTORIES_RUNS: live })
    try {
      const status = () => (existsSync(out) ? /training: step (\d+) of 6/.exec(readFileSync(out, "utf8"))?.[1] : undefined)
      await expect.poll(status, { timeout: 60_000, interval: 200 }).toBe("4")
      expect(readFileSync(out, "utf8")).toContain('<meta http-equiv="refresh" content="1">')
      // The run writes step 5 and is caught mid-way through step 6.
      writeFileSync(join(dir, "metrics.jsonl"), rows.slice(0, 5).join("\n") + "\n" + rows[5]!.slice(0, 20))
      await expect.poll(status, { timeout: 60_000, interval: 200 }).toBe("5")
      expect(readFileSync(out, "utf8")).toContain("1 unreadable metrics line skipped")
      const page = await open(out)
      // Step 6 of rope is seed 1's alone now; step 5 pools both seeds.
      const labels = await page.locator('figure[data-chart="loss"] .view:not([hidden]) [aria-roledescription="point"]').evaluateAll((ps) => ps.map((p) => p.getAttribute("aria-label")!))
      expect(labels.filter((l) => l.startsWith("rope, step 5,"))[0]).toMatch(/mean of 2 seeds/)
      expect(labels.filter((l) => l.startsWith("rope, step 6,"))[0]).not.toMatch(/seeds/)
      expect(errors).toEqual([])
    } finally {
      watcher.child.kill("SIGTERM")
      await watcher.done
    }
  })

  it("indexes every finished run from the ledger, filterable by experiment, with what changed since", async () => {
    const file = await report(["--all"])
    expect(file).toBe(join(folder, "report", "index.html"))
    const page = await open(file)
    const rows = page.locator("#ledger tbody tr")
    expect(await rows.count()).toBe(4)
    // The runs' commit is not in this repository's history, and their data is synthetic.
    expect(await rows.first().locator("td.mark").textContent()).toMatch(/commit unknown here/)
    await page.selectOption("#experiment-filter", "tiny")
    expect(await page.locator("#ledger tbody tr:not([hidden])").count()).toBe(4)
    expect(errors).toEqual([])
  })
})
