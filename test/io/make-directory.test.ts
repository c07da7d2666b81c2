import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { NodeServices } from "@effect/platform-node"
import { Effect, Exit, FileSystem, type Path } from "effect"
import { systemError } from "effect/PlatformError"
import { describe, expect, it } from "vitest"
import { ioReason } from "../../src/errors/io-error.js"
import { writeFileAtomic } from "../../src/io/atomic-write.js"
import { makeDirectory } from "../../src/io/make-directory.js"

/**
 * Making a run's directories names the real cause of a failure. Tests run as root, for whom
 * no directory is read-only, so the read-only file system is the real one with Node's
 * behaviour on it played back: a recursive mkdir says ENOENT, making one level says EROFS.
 */
const tmp = () => mkdtempSync(join(tmpdir(), "make-directory-"))
const nodeError = (code: string, path: string) => Object.assign(new Error(`${code}: mkdir '${path}'`), { code })

/** The real file system, with `readOnly` and everything under it behaving as a read-only mount. */
const withReadOnly = <A, E, R>(readOnly: string, effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    const real = yield* FileSystem.FileSystem
    const fail = (tag: "NotFound" | "AlreadyExists" | "Unknown", code: string, path: string) =>
      Effect.fail(systemError({ _tag: tag, module: "FileSystem", method: "makeDirectory", pathOrDescriptor: path, cause: nodeError(code, path) }))
    const makeDir: FileSystem.FileSystem["makeDirectory"] = (path, options) =>
      !path.startsWith(readOnly)
        ? real.makeDirectory(path, options)
        : options?.recursive
          ? fail("NotFound", "ENOENT", path)
          : Effect.flatMap(real.exists(path), (exists) => (exists ? fail("AlreadyExists", "EEXIST", path) : fail("Unknown", "EROFS", path)))
    return yield* effect.pipe(Effect.provideService(FileSystem.FileSystem, { ...real, makeDirectory: makeDir }))
  })

const run = <A, E>(effect: Effect.Effect<A, E, FileSystem.FileSystem | Path.Path>) => Effect.runPromiseExit(effect.pipe(Effect.provide(NodeServices.layer)))
const errorOf = (exit: Exit.Exit<unknown, unknown>): unknown => {
  if (Exit.isSuccess(exit)) throw new Error("expected a failure")
  const reason = exit.cause.reasons.find((r) => r._tag === "Fail")
  return reason?._tag === "Fail" ? reason.error : exit.cause
}

describe("making a directory", () => {
  it("makes the missing levels", async () => {
    const dir = join(tmp(), "a", "b", "c")
    expect(Exit.isSuccess(await run(makeDirectory(dir)))).toBe(true)
    expect(Exit.isSuccess(await run(makeDirectory(dir)))).toBe(true)
  })

  it("names a read-only file system, which Node's recursive mkdir reports as ENOENT", async () => {
    const mount = join(tmp(), "ro")
    mkdirSync(mount)
    const exit = await run(withReadOnly(mount, makeDirectory(join(mount, "runs", "x"))))
    expect(ioReason(errorOf(exit))).toBe("read-only file system (EROFS)")
    // So does every write that makes its directory, such as a run's files.
    const write = await run(withReadOnly(mount, writeFileAtomic(join(mount, "runs", "x", "spec.json"), "{}", { makeDirectory: true })))
    expect((errorOf(write) as Error).message).toMatch(/spec\.json.*read-only file system \(EROFS\)/)
  })

  it("names a file where a directory should be", async () => {
    const root = tmp()
    writeFileSync(join(root, "runs"), "")
    const exit = await run(makeDirectory(join(root, "runs", "x", "y")))
    expect(ioReason(errorOf(exit))).toBe("a component of the path is not a directory (ENOTDIR)")
  })
})
