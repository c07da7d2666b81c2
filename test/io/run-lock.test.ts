import { spawnSync } from "node:child_process"
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { hostname, tmpdir } from "node:os"
import { join } from "node:path"
import { NodeServices } from "@effect/platform-node"
import { Effect, Exit } from "effect"
import { describe, expect, it } from "vitest"
import { LOCK_FILE, lockHolder, lockRunDir } from "../../src/io/run-lock.js"

/**
 * The run directory's lock: one holder at a time, refusals that name the holder and change
 * nothing, stale locks (a holder killed outright) taken over with a message.
 */
const tmp = () => mkdtempSync(join(tmpdir(), "lock-"))
const said: string[] = []
const hold = <A, E>(dir: string, inside: Effect.Effect<A, E>) =>
  Effect.runPromiseExit(Effect.scoped(Effect.andThen(lockRunDir(dir, (m) => Effect.sync(() => void said.push(m))), inside)).pipe(Effect.provide(NodeServices.layer)))
const failure = (exit: Exit.Exit<unknown, { message: string }>): string => {
  if (Exit.isSuccess(exit)) throw new Error("expected a refusal")
  const reason = exit.cause.reasons.find((r) => r._tag === "Fail")
  return reason?._tag === "Fail" ? reason.error.message : String(exit.cause)
}
/** The pid of a process that has ended. */
const deadPid = (): number => Number(spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" }).stdout)
const files = (dir: string) => Object.fromEntries(readdirSync(dir).map((f) => [f, readFileSync(join(dir, f), "utf8")]))

describe("run directory lock", () => {
  it("holds the lock for the scope, refuses a second holder by name, and releases it", async () => {
    const dir = tmp()
    const exit = await hold(
      dir,
      Effect.gen(function* () {
        const holder = JSON.parse(readFileSync(join(dir, LOCK_FILE), "utf8"))
        expect([holder.pid, holder.host]).toEqual([process.pid, hostname()])
        const before = files(dir)
        const second = yield* Effect.promise(() => hold(dir, Effect.void))
        expect(failure(second as never)).toMatch(new RegExp(`${dir}: in use by pid ${process.pid} on ${hostname()}, started .*; wait for it to finish`))
        // The refused attempt left nothing behind.
        expect(files(dir)).toEqual(before)
      }),
    )
    expect(Exit.isSuccess(exit), String(Exit.isFailure(exit) && exit.cause)).toBe(true)
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false)
  })

  it("takes over the lock of a process that no longer runs, and says so", async () => {
    const dir = tmp()
    const pid = deadPid()
    writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ pid, host: hostname(), started: "2020-01-01T00:00:00.000Z", command: "exp smoke" }))
    said.length = 0
    const exit = await hold(dir, Effect.sync(() => JSON.parse(readFileSync(join(dir, LOCK_FILE), "utf8")).pid))
    expect(exit).toEqual(Exit.succeed(process.pid))
    expect(said).toEqual([`${dir}: took over the stale lock of pid ${pid} on ${hostname()}, started 2020-01-01T00:00:00.000Z (exp smoke), which no longer runs`])
    expect(readdirSync(dir)).toEqual([])
  })

  it("treats a reused pid (a live process started at another time) as stale", async () => {
    const dir = tmp()
    // This process's pid, as if a killed holder had had it before this process started.
    writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ pid: process.pid, host: hostname(), started: "2020-01-01T00:00:00.000Z", processStart: "another-boot/1", command: "exp smoke" }))
    said.length = 0
    expect(Exit.isSuccess(await hold(dir, Effect.void))).toBe(true)
    expect(said[0]).toMatch(/took over the stale lock of pid/)
  })

  it("never takes a lock held on another host, and refuses an unreadable one", async () => {
    const dir = tmp()
    const lock = JSON.stringify({ pid: deadPid(), host: "elsewhere", started: "2020-01-01T00:00:00.000Z", command: "exp smoke" })
    writeFileSync(join(dir, LOCK_FILE), lock)
    expect(failure((await hold(dir, Effect.void)) as never)).toMatch(/in use by pid \d+ on elsewhere.*; if that process has ended, delete .*run\.lock/)
    expect(files(dir)).toEqual({ [LOCK_FILE]: lock })
    writeFileSync(join(dir, LOCK_FILE), "{\"pid\":")
    expect(failure((await hold(dir, Effect.void)) as never)).toMatch(/run\.lock is unreadable .*; if no run is using this directory, delete/)
  })

  it("tells who holds a lock now: a live process or one on another host, never a stale or absent lock", async () => {
    const dir = tmp()
    const holder = () => Effect.runPromise(lockHolder(dir).pipe(Effect.provide(NodeServices.layer)))
    expect(await holder()).toBeUndefined()
    const exit = await hold(dir, Effect.promise(holder))
    expect(Exit.isSuccess(exit) && exit.value?.pid).toBe(process.pid)
    writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ pid: deadPid(), host: hostname(), started: "2020-01-01T00:00:00.000Z", command: "exp smoke" }))
    expect(await holder()).toBeUndefined()
    writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ pid: deadPid(), host: "elsewhere", started: "2020-01-01T00:00:00.000Z", command: "exp smoke" }))
    expect((await holder())?.host).toBe("elsewhere")
  })
})
