import { Effect, FileSystem, Path } from "effect"
import type { PlatformError } from "effect/PlatformError"
import { errnoCode } from "../errors/io-error.js"

/**
 * A directory and its missing parents. Node's recursive mkdir reports some failures on the way
 * (a read-only file system, exhausted inodes) as ENOENT, "no such file or directory", which
 * names the wrong cause; then the levels are made one at a time from the top, each existing one
 * passed over, so the error is the real one (EROFS, ENOSPC, EACCES, ENOTDIR) of the first level
 * that cannot be made.
 */
export const makeDirectory = (dir: string): Effect.Effect<void, PlatformError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const oneLevel = (level: string) => fs.makeDirectory(level).pipe(Effect.catchIf((e) => errnoCode(e) === "EEXIST", () => Effect.void))
    const levelByLevel = Effect.forEach(levelsOf(path, path.resolve(dir)), oneLevel, { discard: true })
    yield* fs.makeDirectory(dir, { recursive: true }).pipe(Effect.catchIf((e) => errnoCode(e) === "ENOENT", () => levelByLevel))
  })

/** Every directory from the root down to `dir`, the root left out. */
const levelsOf = (path: Path.Path, dir: string): string[] => {
  const parent = path.dirname(dir)
  return parent === dir ? [] : [...levelsOf(path, parent), dir]
}
