import { isPlatformError } from "effect/PlatformError"

/**
 * Operating-system I/O errors in plain language. Effect's PlatformError keeps the Node error
 * (with its errno code) as its cause, but its own message is "Unknown: FileSystem.writeAll (28)",
 * where 28 is a file descriptor; callers know the path and name it themselves.
 */
const plain: Readonly<Record<string, string>> = {
  ENOSPC: "no space left on device",
  EDQUOT: "disk quota exceeded",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EROFS: "read-only file system",
  EISDIR: "is a directory",
  ENOTDIR: "a component of the path is not a directory",
  ENOENT: "no such file or directory",
  EEXIST: "already exists",
  ENOTEMPTY: "directory not empty",
  EMFILE: "too many open files",
  ENFILE: "too many open files in the system",
  EIO: "input/output error (a failing disk?)",
  EBUSY: "resource busy",
  EFBIG: "file too large",
  ENAMETOOLONG: "file name too long",
  ELOOP: "too many symbolic links",
  EXDEV: "cross-device link",
}

/** The errno code (e.g. "ENOSPC") of a Node error, or of the one a PlatformError wraps. */
export const errnoCode = (e: unknown): string | undefined => {
  const direct = (e as { code?: unknown } | null)?.code
  if (typeof direct === "string") return direct
  if (isPlatformError(e)) return errnoCode((e.reason as { cause?: unknown }).cause)
  return undefined
}

/** Why an I/O operation failed, e.g. "no space left on device (ENOSPC)"; the error's own message for other failures. */
export const ioReason = (e: unknown): string => {
  const code = errnoCode(e)
  if (code !== undefined && plain[code] !== undefined) return `${plain[code]} (${code})`
  const message = (e as { message?: unknown } | null)?.message
  return typeof message === "string" ? message : String(e)
}
