import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { command as expCommand } from "../../src/cli/exp.js"
import { snapshot } from "../files.js"
import { runInProcess, stackLine } from "./in-process.js"
import { command, killMidRun, root, testRunsFolder } from "./process.js"

/**
 * A distillation run through `npm run exp`, as a user runs it: real TinyStories development
 * data, the smoke experiment's tiny model as teacher (trained first, since it is missing) and
 * as student, and real signals. What is not about the process (the uninterrupted twin of
 * the killed run, which trains the teacher, the replay, the refusals) runs in this process.
 */
const tmp = () => mkdtempSync(join(tmpdir(), "distill-cli-"))
const start = (args: string[]) => command("src/cli/exp.ts", args)
const exp = (args: string[]) => start(args).done
const expHere = (args: string[]) => runInProcess(expCommand, args, { TINYSTORIES_RUNS: testRunsFolder })
const file = (dir: string, name: string) => readFileSync(join(dir, "checkpoint", name))
/** The smoke run's spec.json as a student distilled from `teacher`. */
const studentSpec = (teacher: Record<string, unknown>, objective: Record<string, unknown> = {}): string => {
  const spec = JSON.parse(readFileSync(join(root, "test/cli/fixtures/smoke-spec.json"), "utf8"))
  const path = join(tmp(), "spec.json")
  writeFileSync(path, JSON.stringify({ ...spec, experiment: "student", objective: { kind: "distill", teacher, temperature: 2, alpha: 0.5, divergence: "forward-kl", ...objective } }))
  return path
}

describe("npm run exp with a distillation objective", { timeout: 600_000 }, () => {
  it("trains a missing teacher first, then distils; SIGKILL and resume end byte-identical, the teacher untouched", async () => {
    const teacher = join(tmp(), "teacher")
    const spec = studentSpec({ run: teacher, experiment: "smoke" })
    const args = [spec, "--steps", "12", "--checkpoint-every", "4"]
    const straight = tmp()
    const a = await expHere([...args, "--out", straight])
    expect(a.code, a.stderr).toBe(0)
    expect(a.stderr).toContain(`teacher ${teacher} does not exist; training it first (experiment smoke)`)
    expect(JSON.parse(readFileSync(join(teacher, "summary.json"), "utf8")).steps).toBe(60)
    const teacherFiles = snapshot(teacher)

    const killed = tmp()
    const run = start([...args, "--out", killed])
    expect((await killMidRun(run, killed, straight)).signal).toBe("SIGKILL")
    const resumed = await exp([...args, "--out", killed])
    expect(resumed.code, resumed.stderr).toBe(0)
    expect(resumed.stderr).not.toContain("training it first")
    expect(file(killed, "model.safetensors").equals(file(straight, "model.safetensors"))).toBe(true)
    expect(file(killed, "optimizer.safetensors").equals(file(straight, "optimizer.safetensors"))).toBe(true)
    expect(snapshot(teacher)).toEqual(teacherFiles)
    const written = JSON.parse(readFileSync(join(killed, "spec.json"), "utf8"))
    expect(written.objective.teacher).toEqual({ run: teacher, experiment: "smoke", fingerprint: expect.stringMatching(/^[0-9a-f]{16}$/) })
    // The run's own spec.json replays it (the fingerprint is checked against the teacher).
    const replay = await expHere([join(killed, "spec.json"), "--out", tmp()])
    expect(replay.code, replay.stderr).toBe(0)
  })

  it.each([
    ["a missing teacher nothing makes", () => studentSpec({ run: join(tmp(), "none") }), /error: base \(seed 1\): teacher .*none: no run there \(no spec\.json\); train it first/],
    ["a temperature of 0", () => studentSpec({ run: tmp() }, { temperature: 0 }), /error: .*spec\.json: invalid run spec\nat \["objective","temperature"\]: Expected a value greater than 0/],
  ])("refuses %s with one message, writing nothing", async (_name, setup, pattern) => {
    const out = join(tmp(), "out")
    const r = await expHere([setup(), "--out", out])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(pattern)
    expect(r.stderr).not.toMatch(stackLine)
    expect(existsSync(out)).toBe(false)
  })
})
