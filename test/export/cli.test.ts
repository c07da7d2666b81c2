import { createHash } from "node:crypto"
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { hostname, tmpdir } from "node:os"
import { join, relative } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { command } from "../cli/process.js"

const fixtures = join(import.meta.dirname, "../fixtures/pre-stack")
const work = mkdtempSync(join(tmpdir(), "export-cli-"))
afterAll(() => rmSync(work, { recursive: true, force: true }))

/** Every file under dir with its sha256, to show a command left them alone. */
const snapshot = (dir: string): Record<string, string> => {
  const out: Record<string, string> = {}
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name)
      if (statSync(p).isDirectory()) walk(p)
      else out[relative(dir, p)] = createHash("sha256").update(readFileSync(p)).digest("hex")
    }
  }
  walk(dir)
  return out
}

const exportCmd = (args: string[]) => command("src/cli/export.ts", args).done

describe("npm run export", () => {
  it("writes an hf directory under <run>/export/hf and leaves the run's files alone", async () => {
    const run = join(work, "llama")
    cpSync(join(fixtures, "llama"), run, { recursive: true })
    const before = snapshot(run)
    const first = await exportCmd([run, "--format", "hf"])
    expect(first.code, first.stderr).toBe(0)
    const printed = JSON.parse(first.stdout) as { out: string; files: Array<{ name: string; bytes: number }> }
    expect(printed.out).toBe(join(run, "export", "hf"))
    expect(readdirSync(printed.out).sort()).toEqual(["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"])
    for (const f of printed.files) expect(statSync(join(printed.out, f.name)).size).toBe(f.bytes)
    const after = snapshot(run)
    for (const [file, hash] of Object.entries(before)) expect(after[file], file).toBe(hash)
    expect(readdirSync(join(run, "export"))).toEqual(["hf"])
  })

  it("refuses a model the format cannot express with every reason, writing nothing", async () => {
    const run = join(work, "llama-1e-6")
    cpSync(join(fixtures, "llama"), run, { recursive: true })
    const r = await exportCmd([run, "--format", "llama2c"])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/cannot export to llama2c:/)
    expect(r.stderr.match(/RMSNorm epsilon 0\.000001; run\.c hard-codes 0\.00001/g)).toHaveLength(3)
    expect(existsSync(join(run, "export"))).toBe(false)
  })

  it("refuses a run that is still training, naming the process, and writes nothing into its directory", async () => {
    const run = join(work, "training")
    cpSync(join(fixtures, "llama"), run, { recursive: true })
    // This test process as the trainer holding the run's lock.
    writeFileSync(join(run, "run.lock"), JSON.stringify({ pid: process.pid, host: hostname(), started: "2026-01-01T00:00:00.000Z", command: "exp smoke" }))
    const before = snapshot(run)
    const r = await exportCmd([run, "--format", "hf"])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain(`error: ${run}: the run is still training (pid ${process.pid} on ${hostname()}, started 2026-01-01T00:00:00.000Z (exp smoke)); export it once it has finished, or stop it first`)
    expect(snapshot(run)).toEqual(before)
  })
})
