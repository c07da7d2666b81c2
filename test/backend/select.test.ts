import { spawnSync } from "node:child_process"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { INSTALL_HINT } from "../../src/backend/native/index.js"
import { loadAddon, missingCpuFlags } from "../../src/backend/native/addon.js"
import { selectBackend } from "../../src/backend/select.js"

const child = fileURLToPath(new URL("./fixtures/select-child.ts", import.meta.url))
const tsx = fileURLToPath(new URL("../../node_modules/tsx/dist/cli.mjs", import.meta.url))

const runChild = (env: Record<string, string>) => {
  const r = spawnSync(process.execPath, [tsx, child], { env: { ...process.env, ...env }, encoding: "utf8", timeout: 60_000 })
  expect(r.status, r.stderr).toBe(0)
  const line = r.stdout.trim().split("\n").pop() ?? ""
  return { choice: JSON.parse(line) as { first: { name: string; detail: string }; second: { name: string } }, stderr: r.stderr }
}

describe("backend selection", () => {
  it("without the addon runs on stock tfjs and says once what to install", () => {
    const { choice, stderr } = runChild({ TFJS_NATIVE_ADDON: "/nonexistent/tfjs_native.node" })
    expect(choice.first.name).toBe("cpu")
    expect(choice.second.name).toBe("cpu")
    expect(choice.first.detail).toContain(INSTALL_HINT)
    expect(stderr.split(INSTALL_HINT).length - 1).toBe(1)
  })

  it("does not load an addon built for instructions this CPU lacks, and says to rebuild", () => {
    const dir = mkdtempSync(join(tmpdir(), "addon-"))
    writeFileSync(join(dir, "cpu-flags.json"), JSON.stringify({ flags: ["sse2", "avx10_imaginary"] }))
    const { choice, stderr } = runChild({ TFJS_NATIVE_ADDON: join(dir, "tfjs_native.node") })
    expect(choice.first.name).toBe("cpu")
    expect(stderr).toContain("built on a CPU with avx10_imaginary, which this one lacks")
    expect(stderr).toContain("npm run build:native")
  })

  it("counts only instruction-set flags the build CPU had and this one lacks", () => {
    expect(missingCpuFlags(["fpu", "avx2", "avx512f", "avx512_bf16", "amx_tile", "hypervisor"], ["fpu", "avx2", "avx512f"])).toEqual(["avx512_bf16", "amx_tile"])
    expect(missingCpuFlags(["avx2"], ["avx2", "avx512f"])).toEqual([])
  })

  it("prefers native over stock cpu when the addon loads (tfjs-node is not installed here)", async () => {
    const choice = await selectBackend()
    expect(choice.name).toBe(loadAddon().ok ? "native" : "cpu")
    const forced = await selectBackend("cpu")
    expect(forced.name).toBe("cpu")
  })
})
