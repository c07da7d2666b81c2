import { Data } from "effect"
import { errnoCode, ioReason } from "../errors/io-error.js"
import type { AtomicWriteError } from "../io/atomic-write.js"

/** A data file is missing, unreadable or unwritable. */
export class DataFileError extends Data.TaggedError("DataFileError")<{
  readonly path: string
  readonly message: string
}> {}

/** A data file's content is malformed; `message` names the file and the line or byte offset. */
export class DataFormatError extends Data.TaggedError("DataFormatError")<{
  readonly path: string
  readonly line?: number
  readonly byteOffset?: number
  readonly message: string
}> {}

/** A download failed, was cut short beyond its retries, or did not match its size or checksum. */
export class DownloadError extends Data.TaggedError("DownloadError")<{
  readonly url: string
  readonly path: string
  readonly message: string
}> {}

/** Tokenizer training rejected its settings (e.g. a vocabulary size below 256). */
export class TokenizerConfigError extends Data.TaggedError("TokenizerConfigError")<{
  readonly message: string
}> {}

export type DataError = DataFileError | DataFormatError | DownloadError | TokenizerConfigError

/** Maps a Node file-system error to a DataFileError that names the file. */
export const fileError = (path: string, cause: unknown): DataFileError => {
  const reason = errnoCode(cause) === "ENOENT" ? "no such file" : ioReason(cause)
  return new DataFileError({ path, message: `${path}: ${reason}` })
}

/** A failed atomic write as the data layer's DataFileError. */
export const writeError = (e: AtomicWriteError): DataFileError => new DataFileError({ path: e.path, message: e.message })
