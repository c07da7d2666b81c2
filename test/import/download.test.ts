import { createHash } from "node:crypto"
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { NodeServices } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest"
import { command as importCommand } from "../../src/cli/import.js"
import { downloadAndImport, LLAMA2C_MODELS, type PublishedModel } from "../../src/import/download.js"
import { importLlama2c } from "../../src/import/import-run.js"
import { fromLlama2c } from "../../src/import/llama2c.js"
import { ProgressSink } from "../../src/io/progress.js"
import { runInProcess } from "../cli/in-process.js"
import { fixtureTokenizer } from "../export/fixtures.js"
import { llamaLikeVocab, seededModel, writeV0 } from "./fixtures.js"

const sp = llamaLikeVocab(fixtureTokenizer(), new Set())
const config = { dim: 32, hiddenDim: 64, layers: 2, heads: 4, vocab: sp.vocabSize, seqLen: 32 }
const MODEL = Buffer.from(writeV0(seededModel({ dim: 32, hidden: 64, layers: 2, heads: 4, vocab: sp.vocabSize, seqLen: 32, shared: true }, 7)))
const TOKENIZER = Buffer.from(sp.toBin())
const SHA = createHash("sha256").update(MODEL).digest("hex")

/** The test's models: one with a published sha256, one without, and two whose published size or sha256 is wrong. */
const models: Record<string, PublishedModel> = {
  mini: { config, bytes: MODEL.length, sha256: SHA, sha256Source: "the test" },
  unhashed: { config, bytes: MODEL.length },
  wrongsize: { config, bytes: MODEL.length + 4 },
  wronghash: { config, bytes: MODEL.length, sha256: "0".repeat(64), sha256Source: "the test" },
}

let server: Server
let base = ""
let ranges: Array<string | undefined> = []

beforeAll(async () => {
  // Every model name serves the same file, with Range requests for resuming.
  server = createServer((req, res) => {
    const file = req.url === "/tokenizer.bin" ? TOKENIZER : /^\/\w+\.bin$/.test(req.url ?? "") ? MODEL : undefined
    if (file === undefined) return void res.writeHead(404).end()
    ranges.push(req.headers.range)
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? "")
    const start = m === null ? 0 : Number(m[1])
    const headers: Record<string, string | number> = { "Content-Length": file.length - start }
    if (m !== null) headers["Content-Range"] = `bytes ${start}-${file.length - 1}/${file.length}`
    res.writeHead(m === null ? 200 : 206, headers).end(file.subarray(start))
  })
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})
afterAll(() => new Promise<void>((r) => server.close(() => r())))

let dir = ""
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "import-download-"))
  ranges = []
  return () => rmSync(dir, { recursive: true, force: true })
})

const layer = Layer.merge(NodeServices.layer, Layer.succeed(ProgressSink, { isTTY: false, columns: () => 80, write: () => {}, now: () => performance.now() }))
const fetchModel = (name: string, out: string) => downloadAndImport(name, { models, baseUrl: base, cache: join(dir, "cache"), out }).pipe(Effect.provide(layer))
const failure = async (name: string, out: string) => JSON.stringify(await Effect.runPromise(Effect.flip(fetchModel(name, out))))

describe("npm run import -- download", () => {
  it("the published sizes are those of their configs (28 header bytes, float32 weights and RoPE tables), as the importer computes them", () => {
    for (const [name, { config: c, bytes }] of Object.entries(LLAMA2C_MODELS)) {
      const head = c.dim / c.heads
      expect(bytes, name).toBe(28 + 4 * (c.vocab * c.dim + c.layers * (2 * c.dim + 4 * c.dim * c.dim + 3 * c.dim * c.hiddenDim) + c.dim + c.seqLen * head))
      const header = new Uint8Array(Int32Array.of(c.dim, c.hiddenDim, c.layers, c.heads, c.heads, c.vocab, c.seqLen).buffer)
      const read = fromLlama2c(header)
      expect(read.ok ? "" : read.problems.join("\n"), name).toContain(`makes a version 0 file of ${bytes}`)
    }
    expect(LLAMA2C_MODELS["stories15M"]!.bytes).toBe(60_816_028)
  })

  it("fetches the model and tokenizer into the cache and imports them to the same run as the files imported directly, recording the download", async () => {
    const out = join(dir, "a", "mini")
    const result = await Effect.runPromise(fetchModel("mini", out))
    writeFileSync(join(dir, "mini.bin"), MODEL)
    writeFileSync(join(dir, "tokenizer.bin"), TOKENIZER)
    const direct = join(dir, "b", "mini")
    await Effect.runPromise(importLlama2c(join(dir, "mini.bin"), join(dir, "tokenizer.bin"), { out: direct }).pipe(Effect.provide(NodeServices.layer)))
    for (const file of ["tokenizer.json", "checkpoint/model.safetensors"]) expect(readFileSync(join(out, file)).equals(readFileSync(join(direct, file))), file).toBe(true)
    // The spec differs only where its data names the run's own tokenizer.
    const spec = (run: string) => readFileSync(join(run, "spec.json"), "utf8").replaceAll(run, "<run>")
    expect(spec(out)).toBe(spec(direct))
    expect(readFileSync(join(dir, "cache", "llama2c", "mini.bin")).equals(MODEL)).toBe(true)
    expect(result.summary["imported"]).toMatchObject({
      sha256: SHA,
      download: {
        model: { url: `${base}/mini.bin`, bytes: MODEL.length, sha256: SHA, sha256Check: "checked against the published sha256 (from the test)", cached: false },
        tokenizer: { url: `${base}/tokenizer.bin`, sha256Check: expect.stringMatching(/^NOT checked/) },
      },
    })
    // A second import reads the cache.
    const again = await Effect.runPromise(fetchModel("mini", join(dir, "c", "mini")))
    expect(again.download.model.cached).toBe(true)
  })

  it("resumes a partial file from where it stopped", async () => {
    mkdirSync(join(dir, "cache", "llama2c"), { recursive: true })
    writeFileSync(join(dir, "cache", "llama2c", "mini.bin.part"), MODEL.subarray(0, 1000))
    const result = await Effect.runPromise(fetchModel("mini", join(dir, "mini")))
    expect(ranges[0]).toBe("bytes=1000-")
    expect(result.summary["imported"]).toMatchObject({ sha256: SHA })
  })

  it("says plainly when no published sha256 was there to check, recording the computed one", async () => {
    const result = await Effect.runPromise(fetchModel("unhashed", join(dir, "unhashed")))
    expect(result.download.model).toMatchObject({ sha256: SHA, sha256Check: "NOT checked: no published sha256 for this file; the computed one is recorded" })
  })

  it("refuses a size or sha256 mismatch, keeping neither the file nor a run", async () => {
    expect(await failure("wrongsize", join(dir, "wrongsize"))).toContain(`size mismatch: server announces ${MODEL.length} bytes, expected ${MODEL.length + 4}`)
    expect(await failure("wronghash", join(dir, "wronghash"))).toContain(`sha256 mismatch: got ${SHA}, expected ${"0".repeat(64)}`)
    for (const name of ["wrongsize", "wronghash"]) {
      expect(existsSync(join(dir, name))).toBe(false)
      expect(existsSync(join(dir, "cache", "llama2c", `${name}.bin`))).toBe(false)
    }
  })

  it("checks a cached file as a download, refusing one that is not the published file", async () => {
    mkdirSync(join(dir, "cache", "llama2c"), { recursive: true })
    const cached = join(dir, "cache", "llama2c", "mini.bin")
    writeFileSync(cached, Buffer.alloc(MODEL.length))
    expect(await failure("mini", join(dir, "mini"))).toContain(`${cached}: the cached file has sha256 ${createHash("sha256").update(Buffer.alloc(MODEL.length)).digest("hex")}, expected ${SHA}; delete it to download it again`)
    writeFileSync(join(dir, "cache", "llama2c", "unhashed.bin"), MODEL.subarray(1))
    expect(await failure("unhashed", join(dir, "unhashed"))).toContain(`the cached file has ${MODEL.length - 1} bytes, expected ${MODEL.length}`)
    expect(ranges).toEqual([])
  })

  it("refuses a run directory that is not empty before downloading anything", async () => {
    mkdirSync(join(dir, "taken"))
    writeFileSync(join(dir, "taken", "spec.json"), "{}")
    expect(await failure("mini", join(dir, "taken"))).toContain("is not empty; an import never overwrites a run")
    expect(ranges).toEqual([])
  })

  it("an unknown name is a usage error listing the names (exit 2); the real table is checked against a mirror's file size (exit 1)", async () => {
    const unknown = await runInProcess(importCommand, ["download", "stories1B"])
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toContain(`unknown model "stories1B"; the models are stories15M, stories42M, stories110M`)
    const nameless = await runInProcess(importCommand, ["download"])
    expect(nameless.code).toBe(2)
    expect(nameless.stderr).toContain("download needs a model name; the models are stories15M, stories42M, stories110M")
    const mirrored = await runInProcess(importCommand, ["download", "stories15M", "--base-url", base, "--cache", join(dir, "cache"), "--out", join(dir, "s15")])
    expect(mirrored.code).toBe(1)
    expect(mirrored.stderr).toContain(`${base}/stories15M.bin → ${join(dir, "cache", "llama2c", "stories15M.bin")}: size mismatch: server announces ${MODEL.length} bytes, expected 60816028`)
  })
})
