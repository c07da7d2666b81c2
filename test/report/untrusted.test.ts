import { NodeServices } from "@effect/platform-node"
import { Effect } from "effect"
import { existsSync, mkdirSync, mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { Browser } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { command as reportCommand } from "../../src/cli/report.js"
import { metricsLimits } from "../../src/report/experiment-page.js"
import { readMetrics } from "../../src/report/runs.js"
import { runInProcess } from "../cli/in-process.js"
import { launchChromium } from "./browser.js"
import { metricRows, specOf, summaryOf, writeRun } from "./hostile-runs.js"

/**
 * A run directory is data: whatever its names and files carry, the report shows it as text
 * and is still made. The payloads try every way out of text and attributes (a quote, a tag,
 * a script, a comment); each names its field, so a payload that ran says where it came from.
 */
const attack = (field: string) =>
  `"'><img src=x onerror="__pwned.push('${field}')"><svg onload="__pwned.push('${field}')"></svg><script>__pwned.push('${field}')</script><!--${field}`
/** A file name cannot hold "/". */
const attackName = (field: string) => attack(field).replaceAll("/", "")

let browser: Browser

const report = async (target: string, out: string) => {
  const r = await runInProcess(reportCommand, [target, "--out", out])
  expect(r.code, r.stderr).toBe(0)
  expect(existsSync(out)).toBe(true)
  return r
}

/** The page as the browser builds it, and any payload that ran. */
const inspect = async (file: string) => {
  const page = await browser.newPage()
  const errors: string[] = []
  page.on("pageerror", (e) => errors.push(e.message))
  await page.addInitScript(() => void ((window as unknown as { __pwned: string[] }).__pwned = []))
  await page.goto(`file://${file}`)
  const dom = await page.evaluate(() => {
    const comments = document.createTreeWalker(document, NodeFilter.SHOW_COMMENT)
    let commentCount = 0
    while (comments.nextNode()) commentCount++
    const text = (selector: string) => [...document.querySelectorAll(selector)].map((e) => e.textContent ?? "")
    return {
      pwned: (window as unknown as { __pwned: string[] }).__pwned,
      scripts: document.scripts.length,
      images: [...document.querySelectorAll("img, image")].map((i) => (i.getAttribute("src") ?? "").slice(0, 22)),
      handlers: [...document.querySelectorAll("*")].flatMap((e) => [...e.attributes].filter((a) => a.name.startsWith("on")).map((a) => `${e.tagName} ${a.name}`)),
      comments: commentCount,
      svgs: document.querySelectorAll("svg").length,
      body: document.body.textContent ?? "",
      title: document.title,
      h2: text("h2"),
      resultsHeader: text("#results th"),
      charts: [...document.querySelectorAll<HTMLElement>("figure.chart")].map((f) => f.dataset.chart),
      legends: text(".role-legend-label text"),
      tooltips: [...document.querySelectorAll("[aria-roledescription='point']")].map((p) => p.getAttribute("aria-label") ?? ""),
      warnings: text("p.warning"),
      tooltipBox: document.getElementById("tooltip") !== null,
    }
  })
  await page.close()
  return { ...dom, errors }
}

describe("the report of run directories that carry anything", { timeout: 120_000 }, () => {
  beforeAll(async () => {
    browser = await launchChromium()
  })
  afterAll(async () => {
    await browser?.close()
  })

  it("shows every string of a run directory as text, in text and attributes, keys and values: no payload becomes markup or runs", async () => {
    const folder = mkdtempSync(join(tmpdir(), "report-payloads-"))
    const experiment = join(folder, attackName("experiment-dir"))
    const variant = attack("variant")
    writeRun(join(experiment, attackName("variant-dir"), "seed1"), {
      spec: specOf(attack("experiment"), variant, 1, attack("prompt")),
      summary: {
        ...summaryOf({ experiment: attack("summary-experiment"), variant: attack("summary-variant"), seed: 1 }, 1.5),
        [attack("summary-key")]: 0.25,
        lengths: { [attack("length-key")]: { loss: 1, bpb: 1.25 } },
        backend: attack("backend"),
        backendDetail: attack("backend-detail"),
        machine: attack("machine"),
        sample: attack("sample"),
        tokensPerSecond: attack("summary-value"),
        nested: { [attack("nested-key")]: attack("nested-value") },
      },
      metrics: [
        ...metricRows(6, (step) => (step === 3 ? { [attack("metrics-key")]: attack("metrics-value") } : {})),
        { ...metricRows(7)[6]!, lr: attack("metrics-lr") },
        attack("metrics-line"),
      ],
    })
    writeRun(join(experiment, "plain", "seed2"), { spec: { ...specOf("e", "plain", 2), model: { op: attack("model") } }, summary: summaryOf({ experiment: "e", variant: "plain", seed: 2 }, 1.75), metrics: metricRows(6) })
    writeRun(join(experiment, "bad-seed", "seed3"), { spec: { ...specOf("e", "bad-seed", 3), seed: attack("seed") } })
    writeRun(join(experiment, "plain", "seed4"), { spec: specOf("e", "plain", 4), summary: JSON.stringify(attack("summary")) })

    const out = join(folder, "report.html")
    const { stderr } = await report(experiment, out)
    const dom = await inspect(out)

    expect(dom.pwned).toEqual([])
    expect(dom.errors).toEqual([])
    // The page's own script, and pattern pictures inline: nothing a payload made.
    expect(dom.scripts).toBe(1)
    expect(dom.images.every((src) => src === "data:image/png;base64,")).toBe(true)
    expect(dom.handlers).toEqual([])
    expect(dom.comments).toBe(0)
    // Nothing was cut off: the page ends with its tooltip box, every chart drew.
    expect(dom.tooltipBox).toBe(true)
    // Training loss and gradient norm at 3 smoothings × 2 axes, bpb and lr at 2 axes, one figure (the summary's key).
    expect(dom.svgs).toBe(2 * 3 + 2 + 2 + 2 * 3 + 1)

    // Each payload is on the page as the text it is.
    expect(dom.title).toBe(experiment)
    expect(dom.h2).toContain(variant)
    expect(dom.resultsHeader).toEqual(expect.arrayContaining([attack("summary-key"), `bpb@${attack("length-key")}`]))
    expect(dom.charts).toContain(`figure-${attack("summary-key")}`)
    // Vega shortens a long legend label with an ellipsis.
    expect(dom.legends.some((l) => l.endsWith("…") && variant.startsWith(l.slice(0, -1)) && l.length > 10)).toBe(true)
    expect(dom.tooltips.some((t) => t.startsWith(`${variant}, step 2,`))).toBe(true)
    for (const field of ["backend", "backend-detail", "machine", "sample"]) expect(dom.body).toContain(attack(field))
    expect(dom.body).toContain(join(attackName("variant-dir"), "seed1"))
    expect(dom.body).toContain(`${join(experiment, "plain", "seed2")}/spec.json does not decode`)
    // The string where a figure belongs, the spec without a seed and the summary that is no object are named, not shown as markup.
    expect(dom.warnings.join("\n")).toContain(`tokensPerSecond is ${JSON.stringify(attack("summary-value")).slice(0, 40)}`)
    expect(dom.warnings.some((w) => w.includes(join("bad-seed", "seed3", "spec.json")))).toBe(true)
    expect(dom.warnings.some((w) => w.includes(join("plain", "seed4", "summary.json")))).toBe(true)
    expect(stderr).toContain(`warning: ${join(experiment, "bad-seed", "seed3", "spec.json")}: seed is not a number`)
    expect(readFileSync(out, "utf8")).not.toContain("<img src=x")
  })

  it("leaves out a figure that is malformed or missing (or the run, when its summary is unreadable), names the run directory, and still makes the page", async () => {
    const folder = mkdtempSync(join(tmpdir(), "report-malformed-"))
    const run = (variant: string, summary: object | string) =>
      writeRun(join(folder, "e", variant, "seed1"), { spec: specOf("e", variant, 1), summary, metrics: metricRows(6) })
    const ok = (variant: string) => summaryOf({ experiment: "e", variant, seed: 1 }, 1.5)
    // A one-shot pruned run trains on nothing: its training loss is NaN, null in JSON.
    run("pruned", { ...ok("pruned"), trainLoss: null, tokensTrained: 0, tokensPerSecond: 0, pruning: { sparsity: 0.5, sourceTokens: 384 } })
    run("strings", { ...ok("strings"), valLoss: "3.1" })
    run("nulls", { ...ok("nulls"), valBpb: null })
    run("partial", { ...ok("partial"), params: undefined, lengths: { "16": { loss: 1, bpb: "x" } }, spent: { eval: {} } })
    run("broken", '{"valBpb": 1.')

    const out = join(folder, "report.html")
    const { stderr } = await report(join(folder, "e"), out)
    const dir = (v: string) => join(folder, "e", v, "seed1", "summary.json")
    const expected = [
      `${dir("strings")}: valLoss is "3.1", expected a number; shown as n/a`,
      `${dir("nulls")}: valBpb is null, expected a number; shown as n/a`,
      `${dir("partial")}: params is missing, expected { total, nonEmbedding } numbers; shown as n/a`,
      `${dir("partial")}: spent is {"eval":{}}, expected { training, eval } of { flopsPerToken, blocksPerToken } numbers; left out`,
      `${dir("partial")}: lengths["16"] is {"loss":1,"bpb":"x"}, expected { loss, bpb } numbers; left out`,
      `${dir("broken")} is not JSON; its run is left out`,
    ]
    for (const w of expected) expect(stderr).toContain(`warning: ${w}`)
    expect(stderr).not.toContain("pruned")

    const page = await browser.newPage()
    await page.goto(`file://${out}`)
    expect(await page.locator("p.warning").allTextContents()).toEqual(expect.arrayContaining(expected.map((w) => `not shown: ${w}`)))
    const header = await page.locator("#results thead th").allTextContents()
    const results = Object.fromEntries(
      (await page.locator("#results tbody tr").evaluateAll((rows) => rows.map((r) => [...(r as HTMLTableRowElement).cells].map((c) => c.textContent ?? "")))).map((cells) => [cells[0], Object.fromEntries(header.map((h, i) => [h, cells[i]]))]),
    )
    expect(Object.keys(results).sort()).toEqual(["nulls", "partial", "pruned", "strings"])
    expect(results.pruned!["val bpb"]).toBe("1.5000")
    expect(results.pruned!.tokens).toBe("384 + 0")
    expect(results.strings!["val loss"]).toBe("n/a")
    expect(results.nulls!["val bpb"]).toBe("n/a")
    expect(results.partial!["params (total / non-emb)"]).toBe("n/a / n/a")
    expect(results.partial!["bpb@16"]).toBe("n/a")
    // The pruned run's own table: no training loss, and no warning for it.
    const trainLoss = await page.locator("#variant-pruned table").evaluate((t) => {
      const table = t as HTMLTableElement
      const col = [...table.tHead!.rows[0]!.cells].findIndex((c) => c.textContent === "train loss")
      return table.tBodies[0]!.rows[0]!.cells[col]!.textContent
    })
    expect(trainLoss).toBe("n/a")
    expect(await page.locator("#variant-broken").count()).toBe(0)
    await page.close()
  })

  it("streams metrics.jsonl, and says on the page when one cannot be read", async () => {
    const folder = mkdtempSync(join(tmpdir(), "report-metrics-"))
    const good = join(folder, "e", "good", "seed1")
    const bad = join(folder, "e", "bad", "seed1")
    writeRun(good, { spec: specOf("e", "good", 1), summary: summaryOf({ experiment: "e", variant: "good", seed: 1 }, 1.5), metrics: [...metricRows(6), '{"step": 7, "tok'] })
    writeRun(bad, { spec: specOf("e", "bad", 1), summary: summaryOf({ experiment: "e", variant: "bad", seed: 1 }, 1.5) })
    mkdirSync(join(bad, "metrics.jsonl"))

    // Read a few bytes at a time, the file gives what it gives read at once.
    const read = (chunkSize?: number) => Effect.runPromise(readMetrics(join(good, "metrics.jsonl"), metricsLimits, chunkSize === undefined ? {} : { chunkSize }).pipe(Effect.provide(NodeServices.layer)))
    const whole = await read()
    expect(whole.rows.map((r) => r.step)).toEqual([1, 2, 3, 4, 5, 6])
    expect(whole.skipped).toBe(1)
    expect(await read(7)).toEqual(whole)

    const out = join(folder, "report.html")
    const { stderr } = await report(join(folder, "e"), out)
    const why = `cannot read ${join(bad, "metrics.jsonl")}: is a directory (EISDIR); its curves are left out`
    expect(stderr).toContain(`warning: ${why}`)
    const page = await browser.newPage()
    await page.goto(`file://${out}`)
    expect(await page.locator("p.warning").allTextContents()).toContain(`not shown: ${why}`)
    expect(await page.locator("#variant-bad td", { hasText: "finished" }).textContent()).toBe("finished (metrics.jsonl could not be read)")
    expect(await page.locator("#variant-good td", { hasText: "finished" }).textContent()).toBe("finished (1 unreadable metrics line skipped)")
    // The readable run's curves are drawn.
    expect(await page.locator('figure[data-chart="loss"] .view [aria-roledescription="line mark"]').count()).toBeGreaterThan(0)
    await page.close()
  })
})
