import { createHash } from "node:crypto"
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { hostname, tmpdir } from "node:os"
import { join, relative } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { command as exportCommand } from "../../src/cli/export.js"
import { runInProcess } from "../cli/in-process.js"
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

/** The command as a user runs it, in its own process: its exit code and what it prints. */
const exportCmd = (args: string[]) => command("src/cli/export.ts", args).done
/** The command through the same boundary in this process, for the cases that never reach the process-level parts. */
const exportHere = (args: string[]) => runInProcess(exportCommand, args)

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

  it("writes a GGUF file under <run>/export/gguf-<type>, each type in its own directory", async () => {
    const run = join(work, "llama-gguf")
    cpSync(join(fixtures, "llama"), run, { recursive: true })
    const q8 = await exportHere([run, "--format", "gguf", "--type", "q8_0"])
    expect(q8.code, q8.stderr).toBe(0)
    const printed = JSON.parse(q8.stdout) as { out: string; summary: { type: string; tensors: Record<string, number> } }
    expect(printed.out).toBe(join(run, "export", "gguf-q8_0"))
    expect(readdirSync(printed.out)).toEqual(["model.gguf"])
    // Width 32 rows are Q8_0; the FFN's 88-wide rows (ffn_down) are not a multiple of 32 and stay f16; the norms f32.
    expect(printed.summary).toMatchObject({ type: "q8_0", tensors: { q8_0: 14, f16: 2, f32: 5 } })
    const f32 = await exportHere([run, "--format", "gguf"])
    expect(f32.code, f32.stderr).toBe(0)
    expect(readdirSync(join(run, "export")).sort()).toEqual(["gguf-f32", "gguf-q8_0"])
  })

  it("refuses --type for a format without types, and an unknown type, as usage errors, writing nothing", async () => {
    const run = join(work, "llama-type")
    cpSync(join(fixtures, "llama"), run, { recursive: true })
    const hf = await exportHere([run, "--format", "hf", "--type", "f16"])
    expect(hf.code).toBe(2)
    expect(hf.stderr).toContain("error: --type f16: only --format gguf has tensor types")
    const q4 = await exportHere([run, "--format", "gguf", "--type", "q4_0"])
    expect(q4.code).toBe(2)
    expect(q4.stderr).toContain("error: --type q4_0: unknown type; expected f32 | f16 | q8_0")
    expect(existsSync(join(run, "export"))).toBe(false)
  })

  it("refuses a model the format cannot express with every reason, writing nothing", async () => {
    const run = join(work, "llama-1e-6")
    cpSync(join(fixtures, "llama"), run, { recursive: true })
    const r = await exportHere([run, "--format", "llama2c"])
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
    const r = await exportHere([run, "--format", "hf"])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain(`error: ${run}: the run is still training (pid ${process.pid} on ${hostname()}, started 2026-01-01T00:00:00.000Z (exp smoke)); export it once it has finished, or stop it first`)
    expect(snapshot(run)).toEqual(before)
  })
})
