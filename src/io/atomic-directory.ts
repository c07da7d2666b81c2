import { Data, Effect, FileSystem, Path } from "effect"
import { fsyncDirectory, writeFileAtomic } from "./atomic-write.js"
import { makeDirectory } from "./make-directory.js"

/**
 * Replaces a directory with one holding exactly the given files, so readers see the old
 * directory or the complete new one: the files go to a sibling `<dir>.next-<pid>`, fsynced,
 * then `<dir>` is renamed away and the new one renamed in. A crash between the two renames
 * leaves the old copy as `<dir>.prev-<pid>`. An existing `<dir>` is replaced only when every
 * entry in it is one of `replaceable` (what an earlier write of the same kind leaves), so a
 * mistyped destination never loses someone's files.
 */
export class DirectoryWriteError extends Data.TaggedError("DirectoryWriteError")<{ readonly path: string; readonly reason: string }> {
  override get message(): string {
    return `cannot write ${this.path}: ${this.reason}`
  }
}

export interface NamedBytes {
  readonly name: string
  readonly data: Uint8Array
}

export const replaceDirectory = (
  dir: string,
  files: ReadonlyArray<NamedBytes>,
  replaceable: ReadonlySet<string>,
): Effect.Effect<void, DirectoryWriteError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const fail = (reason: string) => new DirectoryWriteError({ path: dir, reason })
    const exists = yield* fs.exists(dir).pipe(Effect.orElseSucceed(() => false))
    if (exists) {
      const info = yield* fs.stat(dir).pipe(Effect.mapError((e) => fail(e.message)))
      if (info.type !== "Directory") return yield* fail("it exists and is not a directory")
      const foreign = (yield* fs.readDirectory(dir).pipe(Effect.mapError((e) => fail(e.message)))).filter((name) => !replaceable.has(name))
      if (foreign.length > 0) return yield* fail(`it holds files this command did not write (${foreign.slice(0, 5).join(", ")}${foreign.length > 5 ? ", ..." : ""}); choose another directory`)
    }
    const next = `${dir}.next-${process.pid}`
    const prev = `${dir}.prev-${process.pid}`
    const swap = Effect.gen(function* () {
      yield* fs.remove(next, { recursive: true, force: true })
      yield* makeDirectory(next)
      for (const f of files) yield* writeFileAtomic(path.join(next, f.name), f.data)
      if (exists) yield* fs.rename(dir, prev)
      yield* fs.rename(next, dir)
      yield* fsyncDirectory(path.dirname(dir))
      if (exists) yield* fs.remove(prev, { recursive: true, force: true })
    })
    yield* swap.pipe(
      Effect.onError(() => fs.remove(next, { recursive: true, force: true }).pipe(Effect.ignore)),
      Effect.mapError((e) => fail(e.message)),
    )
  })
