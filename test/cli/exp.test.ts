import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { command as evalCommand } from "../../src/cli/eval.js"
import { command as expCommand } from "../../src/cli/exp.js"
import { runInProcess, stackLine } from "./in-process.js"
import { command, killMidRun, root, stepOf, testRunsFolder, waitFor } from "./process.js"

/**
 * The exp command as a user runs it, in its own process: real TinyStories development data,
 * the smoke experiment's tiny model, and real signals. What is not about the process (the
 * uninterrupted twin of a killed run, the refusals, the eval of a stopped run's checkpoint)
 * runs in this process.
 */
const tmp = () => mkdtempSync(join(tmpdir(), "exp-cli-"))

const start = (args: string[], env?: Record<string, string>) => command("src/cli/exp.ts", args, env)
const exp = (args: string[], env?: Record<string, string>) => start(args, env).done
/** The command through its boundary in this process: for what is not about the process (an uninterrupted twin, a refusal). */
const expHere = (args: string[], env: Record<string, string> = {}) => runInProcess(expCommand, args, { TINYSTORIES_RUNS: testRunsFolder, ...env })

const file = (dir: string, name: string) => readFileSync(join(dir, "checkpoint", name))

describe("npm run exp", { timeout: 300_000 }, () => {
  it("resumes after SIGKILL to byte-identical weights and optimiser state", async () => {
    const args = ["smoke", "--steps", "12", "--checkpoint-every", "4"]
    const straight = tmp()
    const a = await expHere([...args, "--out", straight])
    expect(a.code, a.stderr).toBe(0)

    const killed = tmp()
    const run = start([...args, "--out", killed])
    const k = await killMidRun(run, killed, straight)
    expect(k.signal).toBe("SIGKILL")
    const resumed = await exp([...args, "--out", killed])
    expect(resumed.code, resumed.stderr).toBe(0)
    // The killed process's lock was left behind; the resume took it over and said so.
    expect(resumed.stderr).toMatch(new RegExp(`${killed}: took over the stale lock of pid ${run.child.pid} on .*, which no longer runs`))
    expect(file(killed, "model.safetensors").equals(file(straight, "model.safetensors"))).toBe(true)
    expect(file(killed, "optimizer.safetensors").equals(file(straight, "optimizer.safetensors"))).toBe(true)
    const summary = JSON.parse(readFileSync(join(killed, "summary.json"), "utf8"))
    expect(summary.steps).toBe(12)
    expect(summary.tokenizer).toMatch(/byte-level BPE 512/)

    // Each finished run is in the ledger once, with the code and data it ran on; running a
    // finished run again trains nothing and records nothing.
    const again = await expHere([...args, "--out", straight])
    expect(again.code, again.stderr).toBe(0)
    const records = readdirSync(join(testRunsFolder, "ledger")).map((f) => JSON.parse(readFileSync(join(testRunsFolder, "ledger", f), "utf8")))
    for (const dir of [straight, killed]) {
      const mine = records.filter((r) => r.dir === dir)
      expect(mine.length).toBe(1)
      expect(mine[0]).toMatchObject({ experiment: "smoke", variant: "base", seed: 1, specHash: summary.specHash, tokenizerHash: summary.tokenizerHash, results: { valBpb: summary.valBpb, steps: 12 } })
      expect(mine[0].code.commit).toMatch(/^[0-9a-f]{40}$/)
      expect(mine[0].data.hash).toMatch(/^[0-9a-f]{64}$/)
    }
  })

  it("resumes a LayerDrop run after SIGKILL to byte-identical weights: the skipped blocks are drawn the same again", async () => {
    const spec = JSON.parse(readFileSync(join(root, "test/cli/fixtures/smoke-spec.json"), "utf8"))
    spec.model.layers.n = 4
    spec.model.layers.policy = { op: "policy", kind: "layer-drop", rate: 0.5 }
    const specPath = join(tmp(), "spec.json")
    writeFileSync(specPath, JSON.stringify(spec))
    const args = [specPath, "--steps", "12", "--checkpoint-every", "4"]
    const straight = tmp()
    const a = await expHere([...args, "--out", straight])
    expect(a.code, a.stderr).toBe(0)
    const killed = tmp()
    const run = start([...args, "--out", killed])
    expect((await killMidRun(run, killed, straight)).signal).toBe("SIGKILL")
    const resumed = await exp([...args, "--out", killed])
    expect(resumed.code, resumed.stderr).toBe(0)
    expect(file(killed, "model.safetensors").equals(file(straight, "model.safetensors"))).toBe(true)
    expect(file(killed, "optimizer.safetensors").equals(file(straight, "optimizer.safetensors"))).toBe(true)
    const summary = (dir: string) => JSON.parse(readFileSync(join(dir, "summary.json"), "utf8"))
    // Blocks were skipped (all 48 draws at p = 0.5 keeping every block is a 2⁻⁴⁸ chance), and the resumed run counts them alike.
    expect(summary(killed).spent.training.blocksPerToken).toBeLessThan(4)
    expect(summary(killed).spent.training).toEqual(summary(straight).spent.training)
  })

  it("saves a loadable checkpoint on SIGINT, says how to resume, and exits cleanly", async () => {
    const out = tmp()
    const run = start(["smoke", "--steps", "400", "--checkpoint-every", "1000", "--out", out])
    await waitFor(() => run.child.exitCode === null && existsSync(join(out, "metrics.jsonl")) && readFileSync(join(out, "metrics.jsonl"), "utf8").split("\n").length > 3)
    run.child.kill("SIGINT")
    const r = await run.done
    expect(r.stderr).toMatch(/Stopped at step (\d+)\/400; checkpoint saved in .*checkpoint\.\nResume with: npm run exp smoke -- --steps 400 --checkpoint-every 1000 --out /)
    expect(r.stderr).not.toMatch(/at .*\.ts:\d+/)
    const stopped = Number(/Stopped at step (\d+)/.exec(r.stderr)![1])
    expect(stepOf(out)).toBe(stopped)
    expect(r.code).toBe(130)
    // The checkpoint loads: the eval command evaluates it.
    const evaluated = await runInProcess(evalCommand, [out, "--tokens", "512"])
    expect(evaluated.code, evaluated.stderr).toBe(0)
    const figures = JSON.parse(evaluated.stdout)
    expect(figures.step).toBe(stopped)
    expect(figures.tokens).toBe(512)
    expect(figures.valLoss).toBeGreaterThan(0)
    expect(figures.valBpb).toBeCloseTo(figures.valLoss / Math.LN2 / figures.bytesPerToken, 10)
    // A plain decoder spends its nominal FLOPs, every block for every token.
    expect(figures.flopsPerToken.spent).toBe(figures.flopsPerToken.nominal)
    expect(figures.blocksPerToken).toBe(2)
  })

  it("lets exactly one of two runs started together train into a directory; the other names the holder, and the result equals a single run", async () => {
    const args = ["smoke", "--steps", "30", "--checkpoint-every", "10"]
    const single = tmp()
    const shared = tmp()
    // The single run, which only gives the bytes to compare with, trains in this process meanwhile.
    const [alone, a, b] = await Promise.all([expHere([...args, "--out", single]), exp([...args, "--out", shared]), exp([...args, "--out", shared])])
    expect(alone.code, alone.stderr).toBe(0)
    expect([a.code, b.code].sort()).toEqual([0, 1])
    const loser = a.code === 1 ? a : b
    expect(loser.stderr).toMatch(new RegExp(`error: ${shared}: in use by pid \\d+ on .*\\(exp smoke --steps 30 --checkpoint-every 10 --out ${shared}\\); wait for it to finish`))
    expect(loser.stderr).not.toMatch(/\n\s+at .*:\d+:\d+/)
    expect(file(shared, "model.safetensors").equals(file(single, "model.safetensors"))).toBe(true)
    expect(file(shared, "optimizer.safetensors").equals(file(single, "optimizer.safetensors"))).toBe(true)
    const rows = (dir: string) =>
      readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => {
        const { tokensPerSecond: _, ...row } = JSON.parse(l) as Record<string, unknown>
        return row
      })
    expect(rows(shared)).toEqual(rows(single))
    expect(rows(shared)).toHaveLength(30)
    const summary = (dir: string) => {
      const { wallSeconds: _w, trainSeconds: _t, tokensPerSecond: _r, stepPeakBytes: _p, finishedAt: _f, ...rest } = JSON.parse(readFileSync(join(dir, "summary.json"), "utf8")) as Record<string, unknown>
      return rest
    }
    expect(summary(shared)).toEqual(summary(single))
  })

  const failures: Array<[string, () => { args: string[]; env?: Record<string, string> }, RegExp]> = [
    ["an unknown experiment", () => ({ args: ["no-such-experiment"] }), /no-such-experiment: no such experiment; expected one of .*base.*smoke/],
    [
      "a spec.json with a bad model",
      () => {
        const spec = JSON.parse(readFileSync(join(root, "test/cli/fixtures/smoke-spec.json"), "utf8"))
        spec.model.layers.block.layers[0].body[1].heads = 3
        const path = join(tmp(), "spec.json")
        writeFileSync(path, JSON.stringify(spec))
        return { args: [path] }
      },
      /invalid run spec\nat \["model","layers","block","layers",0,"body",1,"heads"\]: 3 does not divide width 32/,
    ],
    ["an unreadable data directory", () => ({ args: ["smoke", "--out", tmp()], env: { TINYSTORIES_DIR: "/nonexistent/tinystories" } }), /\/nonexistent\/tinystories/],
    [
      "an output directory that cannot be created",
      () => {
        const f = join(tmp(), "plain-file")
        writeFileSync(f, "")
        return { args: ["smoke", "--out", join(f, "run")] }
      },
      /cannot write to the output directory .*plain-file\/run/,
    ],
  ]

  it.each(failures)("rejects %s with one clear message and a non-zero exit", async (_name, setup, expected) => {
    const { args, env = {} } = setup()
    const r = await expHere(args, env)
    expect(r.code).not.toBe(0)
    expect(r.stderr).toMatch(expected)
    expect(r.stderr).not.toMatch(stackLine)
  })
})
