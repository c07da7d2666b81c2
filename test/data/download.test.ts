import { createHash } from "node:crypto"
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest"
import { downloadFile } from "../../src/data/download.js"
import { ProgressSink } from "../../src/io/progress.js"

/** 300 000 deterministic bytes. */
const BODY = Buffer.from(Uint8Array.from({ length: 300_000 }, (_, i) => (i * 31 + (i >> 8)) & 0xff))
const SHA = createHash("sha256").update(BODY).digest("hex")

let server: Server
let base: string
let requests: { path: string; range: string | undefined }[] = []
/** Requests still to be cut off after this many body bytes. */
let cutAfter: number[] = []

const serveBody = (req: IncomingMessage, res: ServerResponse): void => {
  const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? "")
  const start = m === null ? 0 : Number(m[1])
  if (start >= BODY.length) {
    res.writeHead(416, { "Content-Range": `bytes */${BODY.length}` }).end()
    return
  }
  const part = BODY.subarray(start)
  const headers: Record<string, string | number> = { "Content-Length": part.length, "Content-Type": "application/octet-stream" }
  if (m !== null) headers["Content-Range"] = `bytes ${start}-${BODY.length - 1}/${BODY.length}`
  res.writeHead(m === null ? 200 : 206, headers)
  const cut = cutAfter.shift()
  if (cut === undefined) {
    res.end(part)
    return
  }
  res.write(part.subarray(0, cut), () => setTimeout(() => res.destroy(), 20))
}

beforeAll(async () => {
  server = createServer((req, res) => {
    requests.push({ path: req.url ?? "", range: req.headers.range })
    if (req.url === "/resolve/file.bin") {
      // Like Hugging Face: a redirect to the CDN carrying the LFS size and sha256.
      res.writeHead(302, { Location: "/cdn/file.bin", "X-Linked-Size": BODY.length, "X-Linked-Etag": `"${SHA}"` }).end()
    } else if (req.url === "/resolve/wrong-sha.bin") {
      res.writeHead(302, { Location: "/cdn/file.bin", "X-Linked-Etag": `"${"0".repeat(64)}"` }).end()
    } else if (req.url === "/cdn/file.bin" || req.url === "/plain/file.bin") serveBody(req, res)
    else res.writeHead(404).end("not found")
  })
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})

afterAll(() => new Promise<void>((r) => server.close(() => r())))

/** What the progress bar printed (a log, not a terminal). */
let printed: string[] = []

beforeEach(() => {
  requests = []
  cutAfter = []
  printed = []
})

const dest = (name: string): string => join(mkdtempSync(join(tmpdir(), "download-test-")), name)
type Extra = { size?: number; retries?: number; progress?: boolean }
const sink = { isTTY: false, columns: () => 80, write: (s: string) => void printed.push(s), now: () => performance.now() }
const download = (url: string, path: string, extra: Extra) =>
  Effect.provideService(downloadFile({ url, dest: path, retryDelayMs: 5, ...extra }), ProgressSink, sink)
const run = (url: string, path: string, extra: Extra = {}) => Effect.runPromise(download(url, path, extra))
const fail = (url: string, path: string, extra: Extra = {}) => Effect.runPromise(Effect.flip(download(url, path, extra)))

describe("downloadFile against a local HTTP server", () => {
  it("downloads, follows the redirect and checks size and sha256 from the X-Linked headers", async () => {
    const path = dest("file.bin")
    const result = await run(`${base}/resolve/file.bin`, path)
    expect(readFileSync(path).equals(BODY)).toBe(true)
    expect(result).toMatchObject({ bytes: BODY.length, sha256: SHA, checked: ["size", "sha256"], resumedFrom: [0], skipped: false })
    expect(existsSync(`${path}.part`)).toBe(false)
  })

  it("resumes an interrupted transfer with a Range request", async () => {
    cutAfter = [100_000]
    const path = dest("file.bin")
    const result = await run(`${base}/resolve/file.bin`, path)
    expect(readFileSync(path).equals(BODY)).toBe(true)
    expect(result.resumedFrom).toEqual([0, 100_000])
    expect(requests.filter((r) => r.path === "/cdn/file.bin").map((r) => r.range)).toEqual([undefined, "bytes=100000-"])
    expect(result.checked).toEqual(["size", "sha256"])
  })

  it("resumes a .part left by an earlier run, and survives two cuts in a row", async () => {
    const path = dest("file.bin")
    writeFileSync(`${path}.part`, BODY.subarray(0, 1234))
    cutAfter = [50_000, 70_000]
    const result = await run(`${base}/plain/file.bin`, path)
    expect(readFileSync(path).equals(BODY)).toBe(true)
    expect(result.resumedFrom).toEqual([1234, 51_234, 121_234])
    expect(result.checked).toEqual(["size"])
  })

  it("keeps the .part for a later resume when the retries run out", async () => {
    cutAfter = [10_000, 10_000]
    const path = dest("file.bin")
    const e = await fail(`${base}/plain/file.bin`, path, { retries: 1 })
    expect(e.message).toMatch(/gave up after 2 attempts/)
    expect(readFileSync(`${path}.part`).equals(BODY.subarray(0, 20_000))).toBe(true)
    const result = await run(`${base}/plain/file.bin`, path)
    expect(result.resumedFrom).toEqual([20_000])
    expect(readFileSync(path).equals(BODY)).toBe(true)
  })

  it("fails on a size mismatch and keeps no file", async () => {
    const path = dest("file.bin")
    const e = await fail(`${base}/plain/file.bin`, path, { size: BODY.length + 1 })
    expect(e._tag).toBe("DownloadError")
    expect(e.message).toBe(`${base}/plain/file.bin → ${path}: size mismatch: server announces ${BODY.length} bytes, expected ${BODY.length + 1}`)
    expect(existsSync(path)).toBe(false)
  })

  it("fails on a sha256 mismatch and removes the bad data", async () => {
    const path = dest("file.bin")
    const e = await fail(`${base}/resolve/wrong-sha.bin`, path)
    expect(e.message).toMatch(new RegExp(`sha256 mismatch: got ${SHA}, expected 0{64}`))
    expect(existsSync(path) || existsSync(`${path}.part`)).toBe(false)
  })

  it("fails on HTTP 404 and on an unreachable server", async () => {
    expect((await fail(`${base}/missing.bin`, dest("m.bin"))).message).toMatch(/HTTP 404/)
    const e = await fail("http://127.0.0.1:1/file.bin", dest("x.bin"), { retries: 0 })
    expect(e.message).toMatch(/request failed/)
  })

  it("keeps an existing complete file without fetching", async () => {
    const path = dest("file.bin")
    writeFileSync(path, BODY)
    const result = await run(`${base}/plain/file.bin`, path, { progress: true })
    expect(result).toMatchObject({ skipped: true, sha256: SHA })
    expect(requests).toEqual([])
    expect(printed).toEqual([])
  })

  it("reports progress in bytes against the size the server announces", async () => {
    await run(`${base}/resolve/file.bin`, dest("file.bin"), { progress: true })
    expect(printed[0]).toMatch(/^file\.bin 0\.0% 0 B\/293 KiB /)
    expect(printed.at(-1)).toMatch(/^file\.bin 100\.0% 293 KiB\/293 KiB \S+ [KMG]?i?B\/s ETA 0s\n$/)
  })
})
