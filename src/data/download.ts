import { createHash } from "node:crypto"
import { createReadStream } from "node:fs"
import { mkdir, open, rename, rm, stat } from "node:fs/promises"
import { basename, dirname } from "node:path"
import { Effect } from "effect"
import { type ProgressBar, progressBar, type ProgressSink } from "../io/progress.js"
import { DownloadError } from "./errors.js"

export const HF_DATASET_URL = "https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main"

/** The official files of the Hugging Face dataset repository. */
export const OFFICIAL_FILES = {
  train: "TinyStories-train.txt",
  valid: "TinyStories-valid.txt",
  trainV2: "TinyStoriesV2-GPT4-train.txt",
  validV2: "TinyStoriesV2-GPT4-valid.txt",
  /** The JSON shards (data00.json … data49.json) as one archive; extract with `tar xzf`. */
  jsonShards: "TinyStories_all_data.tar.gz",
} as const

export interface DownloadOptions {
  readonly url: string
  readonly dest: string
  /** Expected size in bytes; else Hugging Face's X-Linked-Size, else the server's length. */
  readonly size?: number
  /** Expected sha256 (hex); else Hugging Face's X-Linked-Etag when it is a sha256 (LFS files). */
  readonly sha256?: string
  /** Further attempts after a dropped connection, each resuming where the last stopped. */
  readonly retries?: number
  readonly retryDelayMs?: number
  /** Report progress on stderr (bar on a TTY, lines otherwise). */
  readonly progress?: boolean
}

export interface DownloadResult {
  readonly path: string
  readonly bytes: number
  /** sha256 of the completed file (hex). */
  readonly sha256: string
  /** What was verified: "size" (against the expected or announced length), "sha256". */
  readonly checked: readonly ("size" | "sha256")[]
  /** Bytes already present in the `.part` file when each attempt started. */
  readonly resumedFrom: readonly number[]
  /** True when `dest` already existed and nothing was fetched. */
  readonly skipped: boolean
}

/** A dropped connection or short body: worth another attempt that resumes. */
class Interrupted extends Error {}

interface Remote {
  readonly response: Response
  readonly linkedSize?: number
  readonly linkedSha256?: string
}

/** Follows redirects by hand so Hugging Face's X-Linked-* headers on the first hop are kept. */
const fetchFollowing = async (url: string, headers: Record<string, string>): Promise<Remote> => {
  let linkedSize: number | undefined
  let linkedSha256: string | undefined
  let current = url
  for (let hop = 0; hop < 10; hop++) {
    let response: Response
    try {
      response = await fetch(current, { headers, redirect: "manual" })
    } catch (e) {
      const cause = (e as Error).cause as NodeJS.ErrnoException | undefined
      throw new Interrupted(`request failed: ${(e as Error).message}${cause !== undefined ? ` (${cause.code ?? cause.message})` : ""}`)
    }
    const size = response.headers.get("x-linked-size")
    if (size !== null && /^\d+$/.test(size)) linkedSize ??= Number(size)
    const etag = response.headers.get("x-linked-etag")?.replace(/^W\//, "").replaceAll('"', "")
    if (etag !== undefined && /^[0-9a-f]{64}$/.test(etag)) linkedSha256 ??= etag
    const location = response.headers.get("location")
    if (response.status >= 300 && response.status < 400 && location !== null) {
      await response.body?.cancel()
      current = new URL(location, current).toString()
      continue
    }
    return { response, ...(linkedSize !== undefined ? { linkedSize } : {}), ...(linkedSha256 !== undefined ? { linkedSha256 } : {}) }
  }
  throw new Error("too many redirects")
}

const sizeOf = (path: string): Promise<number> =>
  stat(path).then(
    (s) => s.size,
    () => 0,
  )

const sha256Of = async (path: string): Promise<string> => {
  const hash = createHash("sha256")
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer)
  return hash.digest("hex")
}

/** `bytes a-b/total` → {start, total}; total undefined for `*`. */
const parseContentRange = (value: string | null): { start: number; total: number | undefined } | undefined => {
  const m = value === null ? null : /^bytes (?:(\d+)-\d+|\*)\/(\d+|\*)$/.exec(value.trim())
  if (m === null || m === undefined) return undefined
  return { start: m[1] === undefined ? 0 : Number(m[1]), total: m[2] === "*" ? undefined : Number(m[2]) }
}

/** One attempt: fetches what is missing from `<dest>.part`; resolves to the expected total size. */
const attempt = async (
  options: DownloadOptions,
  part: string,
  have: number,
  bar: ProgressBar | undefined,
  fail: (message: string) => DownloadError,
): Promise<{ expected: number | undefined; sha256: string | undefined }> => {
  const remote = await fetchFollowing(options.url, have > 0 ? { Range: `bytes=${have}-` } : {})
  const { response } = remote
  const expectedSize = options.size ?? remote.linkedSize
  const sha256 = options.sha256 ?? remote.linkedSha256
  if (response.status === 416) {
    const total = parseContentRange(response.headers.get("content-range"))?.total
    await response.body?.cancel()
    if (total !== undefined && total === have) return { expected: expectedSize ?? total, sha256 }
    await rm(part, { force: true })
    throw new Interrupted(`server refused the range from byte ${have}; restarting from scratch`)
  }
  if (response.status !== 200 && response.status !== 206) {
    await response.body?.cancel()
    const message = `HTTP ${response.status} ${response.statusText}`
    if (response.status >= 500) throw new Interrupted(message)
    throw fail(message)
  }
  let start = 0
  let total: number | undefined
  const length = response.headers.get("content-length")
  if (response.status === 206) {
    const range = parseContentRange(response.headers.get("content-range"))
    if (range === undefined || range.start !== have) {
      await response.body?.cancel()
      throw fail(`bad Content-Range ${JSON.stringify(response.headers.get("content-range"))} for a request from byte ${have}`)
    }
    start = have
    total = range.total
  } else if (length !== null) total = Number(length)
  if (expectedSize !== undefined && total !== undefined && total !== expectedSize) {
    await response.body?.cancel()
    throw fail(`size mismatch: server announces ${total} bytes, expected ${expectedSize}`)
  }
  const expected = expectedSize ?? total
  bar?.set({ current: start, total: expected })
  const handle = await open(part, start === 0 ? "w" : "a")
  let written = start
  try {
    if (response.body === null) throw new Interrupted("empty response body")
    try {
      for await (const chunk of response.body) {
        await handle.write(chunk)
        written += chunk.length
        bar?.set({ current: written })
      }
    } catch (e) {
      throw new Interrupted(`connection dropped at byte ${written}: ${(e as Error).message}`)
    }
  } finally {
    await handle.close()
  }
  if (total !== undefined && written < total) throw new Interrupted(`connection closed at byte ${written} of ${total}`)
  return { expected, sha256 }
}

/**
 * Downloads `url` to `dest` through `<dest>.part`, resuming a partial file with an HTTP Range
 * request (also across runs), retrying dropped connections, checking the size (and sha256 when
 * known) and renaming into place only when complete. An existing `dest` is kept as is.
 */
export const downloadFile = (options: DownloadOptions): Effect.Effect<DownloadResult, DownloadError, ProgressSink> =>
  Effect.scoped(
    Effect.flatMap(
      options.progress === true ? progressBar({ label: basename(options.dest), bytes: true }) : Effect.succeed(undefined),
      (bar) =>
        Effect.tryPromise({
          try: async (): Promise<DownloadResult> => {
            const { url, dest } = options
            const fail = (message: string) => new DownloadError({ url, path: dest, message: `${url} → ${dest}: ${message}` })
            const existing = await stat(dest).catch(() => undefined)
            if (existing?.isFile() === true) {
              return { path: dest, bytes: existing.size, sha256: await sha256Of(dest), checked: [], resumedFrom: [], skipped: true }
            }
            await mkdir(dirname(dest), { recursive: true })
            const part = `${dest}.part`
            const retries = options.retries ?? 5
            const resumedFrom: number[] = []
            for (let i = 0; ; i++) {
              const have = await sizeOf(part)
              resumedFrom.push(have)
              try {
                const { expected, sha256 } = await attempt(options, part, have, bar, fail)
                const bytes = await sizeOf(part)
                const checked: ("size" | "sha256")[] = []
                if (expected !== undefined) {
                  if (bytes !== expected) {
                    await rm(part, { force: true })
                    throw fail(`size mismatch: got ${bytes} bytes, expected ${expected}`)
                  }
                  checked.push("size")
                }
                const digest = await sha256Of(part)
                if (sha256 !== undefined) {
                  if (digest !== sha256.toLowerCase()) {
                    await rm(part, { force: true })
                    throw fail(`sha256 mismatch: got ${digest}, expected ${sha256}`)
                  }
                  checked.push("sha256")
                }
                await rename(part, dest)
                return { path: dest, bytes, sha256: digest, checked, resumedFrom, skipped: false }
              } catch (e) {
                if (!(e instanceof Interrupted)) throw e
                if (i >= retries) {
                  const kept = await sizeOf(part)
                  throw fail(`${e.message}; gave up after ${i + 1} attempts${kept > 0 ? ` (${part} keeps ${kept} bytes for a later resume)` : ""}`)
                }
                await new Promise((r) => setTimeout(r, (options.retryDelayMs ?? 1000) * 2 ** i))
              }
            }
          },
          catch: (e) =>
            e instanceof DownloadError
              ? e
              : new DownloadError({ url: options.url, path: options.dest, message: `${options.url} → ${options.dest}: ${String((e as Error)?.message ?? e)}` }),
        }),
    ),
  )
