import { Effect, FileSystem, Option, Path } from "effect"

/**
 * Why a command that writes one file of its own kind (a report page, a pattern picture) may
 * not write `out`: it replaces only a file of that kind, never a file inside a run directory
 * (one holding spec.json), and a directory is not a file. Undefined when it may.
 */
export const outFileProblem = (out: string, kind: { readonly name: string; readonly starts: (head: Uint8Array) => boolean }) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const target = path.resolve(out)
    const info = yield* fs.stat(target).pipe(Effect.option)
    if (Option.isSome(info)) {
      if (info.value.type !== "File") return `--out ${out} is a directory; give the file to write`
      const head = yield* fs.readFile(target).pipe(Effect.map((b) => b.subarray(0, 64)), Effect.orElseSucceed(() => new Uint8Array()))
      if (!kind.starts(head)) return `--out ${out} exists and is not a ${kind.name}; only a ${kind.name} is replaced, so choose another file`
    }
    for (let dir = path.dirname(target); ; dir = path.dirname(dir)) {
      if (yield* fs.exists(path.join(dir, "spec.json")).pipe(Effect.orElseSucceed(() => false)))
        return `--out ${out} is inside the run directory ${dir}, which this command never writes into; choose a file outside it`
      if (path.dirname(dir) === dir) return undefined
    }
  })
