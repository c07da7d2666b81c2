import { readFile } from "node:fs/promises"
import { Effect, type FileSystem, type Path } from "effect"
import { writeFileAtomic } from "../io/atomic-write.js"
import { type DataFileError, DataFormatError, fileError, writeError } from "./errors.js"

export type TokenArray = Uint16Array | Uint32Array

/** A tokenized split: the token stream (stories each followed by `<|endoftext|>`) and its text size. */
export interface TokenFile {
  readonly tokens: TokenArray
  readonly stories: number
  /** UTF-8 bytes of the stories the tokens encode (separators not counted). */
  readonly textBytes: number
}

/**
 * Layout: 32-byte little-endian header — magic "TSTOKENS", u32 bytes per token (2 or 4),
 * u32 stories, f64 token count, f64 text bytes — then the tokens.
 */
const MAGIC = "TSTOKENS"
const HEADER = 32

export const tokenArrayFor = (vocabSize: number, length: number): TokenArray =>
  vocabSize <= 65536 ? new Uint16Array(length) : new Uint32Array(length)

export const writeTokenFile = (path: string, file: TokenFile): Effect.Effect<void, DataFileError, FileSystem.FileSystem | Path.Path> =>
  Effect.suspend(() => {
    const { tokens } = file
    const header = new Uint8Array(HEADER)
    const view = new DataView(header.buffer)
    header.set(new TextEncoder().encode(MAGIC))
    view.setUint32(8, tokens.BYTES_PER_ELEMENT, true)
    view.setUint32(12, file.stories, true)
    view.setFloat64(16, tokens.length, true)
    view.setFloat64(24, file.textBytes, true)
    return writeFileAtomic(path, [header, new Uint8Array(tokens.buffer, tokens.byteOffset, tokens.byteLength)], { makeDirectory: true }).pipe(
      Effect.mapError(writeError),
    )
  })

export const readTokenFile = (path: string): Effect.Effect<TokenFile, DataFileError | DataFormatError> =>
  Effect.flatMap(
    Effect.tryPromise({ try: () => readFile(path), catch: (e) => fileError(path, e) }),
    (buf) =>
      Effect.suspend(() => {
        const bad = (why: string) => Effect.fail(new DataFormatError({ path, byteOffset: 0, message: `${path}: ${why}` }))
        if (buf.length < HEADER || buf.subarray(0, 8).toString("latin1") !== MAGIC) return bad("not a token file (bad header)")
        const view = new DataView(buf.buffer, buf.byteOffset, HEADER)
        const width = view.getUint32(8, true)
        const count = view.getFloat64(16, true)
        if ((width !== 2 && width !== 4) || !Number.isInteger(count)) return bad(`bad header (width ${width}, count ${count})`)
        if (buf.length !== HEADER + width * count) {
          return bad(`truncated: ${buf.length} bytes, header promises ${HEADER + width * count}`)
        }
        // Copy out so the typed array is aligned and owns its memory.
        const body = buf.buffer.slice(buf.byteOffset + HEADER, buf.byteOffset + buf.length)
        const tokens = width === 2 ? new Uint16Array(body) : new Uint32Array(body)
        return Effect.succeed({ tokens, stories: view.getUint32(12, true), textBytes: view.getFloat64(24, true) })
      }),
  )
