import { Effect, FileSystem, Option, Path } from "effect"
import { errnoCode, ioReason } from "../errors/io-error.js"

/**
 * The files with the given names under `dir`, found by walking its directories, sorted. A run
 * that is training renames and removes checkpoint directories as it goes: those (and the
 * ledger's and reports' folders) are not entered, and an entry that vanishes while the walk
 * reaches it is skipped; only the top directory must be readable. Failures are the reason in
 * plain words, naming the directory.
 */
export const findRunFiles = (dir: string, names: ReadonlyArray<string>): Effect.Effect<string[], string, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const found: string[] = []
    const walk = (d: string): Effect.Effect<void, string> =>
      Effect.gen(function* () {
        const entries = yield* fs.readDirectory(d).pipe(
          Effect.map((n) => Option.some(n)),
          Effect.catch((e) => (d !== dir && errnoCode(e) === "ENOENT" ? Effect.succeed(Option.none<string[]>()) : Effect.fail(`cannot list ${d}: ${ioReason(e)}`))),
        )
        if (Option.isNone(entries)) return
        for (const name of [...entries.value].sort()) {
          const full = path.join(d, name)
          if (names.includes(name)) found.push(full)
          else if (!name.startsWith("checkpoint") && name !== "ledger" && name !== "report") {
            const info = yield* fs.stat(full).pipe(Effect.option)
            if (Option.isSome(info) && info.value.type === "Directory") yield* walk(full)
          }
        }
      })
    yield* walk(dir)
    return found.sort()
  })
