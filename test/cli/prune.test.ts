import { existsSync, mkdtempSync, readdirSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { command as evalCommand } from "../../src/cli/eval.js"
import { command as expCommand } from "../../src/cli/exp.js"
import { command as resultsCommand } from "../../src/cli/results.js"
import { snapshot } from "../files.js"
import { runInProcess } from "./in-process.js"
import { command, killMidRun } from "./process.js"

/**
 * Pruning as a user runs it, on the development data: experiments/
 * pruning-smoke.ts prunes the smoke run, which does not exist yet in a fresh runs directory
 * ($TINYSTORIES_RUNS), so the first command trains it; a pruned fine-tune is killed and
 * resumed; the pruned directories work with eval and results; the source is never written.
 * Only the killed fine-tune and its resume are about the process; the rest runs through the
 * commands' boundary in this process.
 */
const tmp = () => mkdtempSync(join(tmpdir(), "prune-cli-"))
const runs = tmp()
const env = { TINYSTORIES_RUNS: runs }
const start = (args: string[]) => command("src/cli/exp.ts", args, env)
const exp = (args: string[]) => start(args).done

const file = (dir: string, name: string) => readFileSync(join(dir, "checkpoint", name))

describe("npm run exp on a pruning experiment", { timeout: 300_000 }, () => {
  const source = join(runs, "smoke")
  let before: Record<string, string>

  it("trains the missing source first, saying so, then prunes it into an ordinary run directory", async () => {
    const r = await runInProcess(expCommand, ["pruning-smoke", "--variant", "heads-importance-50", "--steps", "4"], env)
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toMatch(new RegExp(`pruning source ${source} does not exist; training it first \\(experiment smoke, variant base, seed 1\\)`))
    expect(existsSync(join(source, "summary.json"))).toBe(true)
    before = snapshot(source)
    const pruned = join(runs, "pruning-smoke", "heads-importance-50")
    const spec = JSON.parse(readFileSync(join(pruned, "spec.json"), "utf8"))
    expect(spec.model.layers.block.layers[0].body[1]).toMatchObject({ heads: 1, headDim: 16 })
    expect(spec.prune.source).toMatchObject({ experiment: "smoke", dir: source, step: 60 })
    const evaluated = await runInProcess(evalCommand, [pruned, "--tokens", "512"])
    expect(evaluated.code, evaluated.stderr).toBe(0)
    expect(JSON.parse(evaluated.stdout).step).toBe(4)
  })

  it("a one-shot pruned run (no training steps) adds its record to the ledger, once", async () => {
    const dir = join(runs, "pruning-smoke", "wanda-50")
    for (let i = 0; i < 2; i++) expect((await runInProcess(expCommand, ["pruning-smoke", "--variant", "wanda-50"], env)).code).toBe(0)
    const records = readdirSync(join(runs, "ledger")).map((f) => JSON.parse(readFileSync(join(runs, "ledger", f), "utf8")))
    expect(records.filter((r) => r.experiment === "pruning-smoke" && r.variant === "wanda-50").map((r) => [r.dir, r.results.steps, r.finishedAt])).toEqual([
      [join("pruning-smoke", "wanda-50"), 0, JSON.parse(readFileSync(join(dir, "summary.json"), "utf8")).finishedAt],
    ])
  })

  it("a pruned fine-tune resumes after SIGKILL to byte-identical weights, optimiser state and masks", async () => {
    const args = ["pruning-smoke", "--variant", "gradual-75", "--steps", "48", "--checkpoint-every", "4"]
    const straight = tmp()
    const a = await runInProcess(expCommand, [...args, "--out", straight], env)
    expect(a.code, a.stderr).toBe(0)
    expect(a.stderr).not.toMatch(/training it first/)

    const killed = tmp()
    const run = start([...args, "--out", killed])
    const dir = join(killed, "gradual-75")
    expect((await killMidRun(run, dir, join(straight, "gradual-75"))).signal).toBe("SIGKILL")
    const resumed = await exp([...args, "--out", killed])
    expect(resumed.code, resumed.stderr).toBe(0)
    for (const name of ["model.safetensors", "optimizer.safetensors", "masks.safetensors"]) {
      expect(file(dir, name).equals(file(join(straight, "gradual-75"), name)), name).toBe(true)
    }
    const summary = JSON.parse(readFileSync(join(dir, "summary.json"), "utf8"))
    expect(summary.steps).toBe(48)
    expect(summary.pruning.prunableSparsity).toBeCloseTo(0.75, 2)
    expect(snapshot(source)).toEqual(before)
  })

  it("npm run results tabulates the pruned runs with their sparsity and their source's tokens", async () => {
    const r = await runInProcess(resultsCommand, ["pruning-smoke"], env)
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/\| variant \| seeds \| params \(total \/ non-emb\) \| tokens \| val loss \| val bpb \| sparsity \|/)
    expect(r.stdout).toMatch(/\| heads-importance-50 \| 1 \| .* \| 15\.4k \+ 1024 \| .* \| 0\.1646 \|/)
  })
})
