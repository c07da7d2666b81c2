import { NodeServices } from "@effect/platform-node"
import { Effect } from "effect"
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { replaceDirectory } from "../../src/io/atomic-directory.js"

const work = mkdtempSync(join(tmpdir(), "atomic-dir-"))
afterAll(() => rmSync(work, { recursive: true, force: true }))
const bytes = (s: string) => new TextEncoder().encode(s)
const write = (dir: string, files: Array<[string, string]>, replaceable: string[]) =>
  Effect.runPromise(Effect.result(replaceDirectory(dir, files.map(([name, data]) => ({ name, data: bytes(data) })), new Set(replaceable))).pipe(Effect.provide(NodeServices.layer)))

describe("replaceDirectory", () => {
  it("creates the directory (and its parents), then replaces it whole, leaving nothing beside it", async () => {
    const dir = join(work, "a", "export", "hf")
    expect((await write(dir, [["x.json", "1"], ["y.bin", "2"]], ["x.json", "y.bin"]))._tag).toBe("Success")
    expect((await write(dir, [["x.json", "3"]], ["x.json", "y.bin"]))._tag).toBe("Success")
    expect(readdirSync(dir)).toEqual(["x.json"])
    expect(readFileSync(join(dir, "x.json"), "utf8")).toBe("3")
    expect(readdirSync(join(work, "a", "export"))).toEqual(["hf"])
  })

  it("refuses to replace a directory holding other files, and leaves them", async () => {
    const dir = join(work, "precious")
    mkdirSync(dir)
    writeFileSync(join(dir, "notes.txt"), "mine")
    const r = await write(dir, [["x.json", "1"]], ["x.json"])
    expect(r._tag).toBe("Failure")
    if (r._tag === "Failure") expect(r.failure.message).toMatch(/precious: it holds files this command did not write \(notes\.txt\)/)
    expect(readdirSync(dir)).toEqual(["notes.txt"])
    expect(readdirSync(work).filter((n) => n.startsWith("precious"))).toEqual(["precious"])
  })

  it("refuses a path that is a file", async () => {
    const file = join(work, "file")
    writeFileSync(file, "x")
    const r = await write(file, [["x.json", "1"]], ["x.json"])
    expect(r._tag === "Failure" && r.failure.message).toMatch(/not a directory/)
    expect(readFileSync(file, "utf8")).toBe("x")
  })
})
