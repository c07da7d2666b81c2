import { readFileSync } from "node:fs"
import { hostname } from "node:os"
import { Data, Effect, FileSystem, Path, Scope } from "effect"
import { errnoCode, ioReason } from "../errors/io-error.js"

/**
 * One writer per run directory. `<dir>/run.lock` names the process that trains into it
 * (pid, host, start time, command). It is created atomically: written in full to a private
 * temporary file, then hard-linked to `run.lock`, which fails when a lock is already there.
 * A second process is refused with the holder's details and changes nothing. A lock whose
 * holder is gone (killed with SIGKILL, a power cut) is stale: on the same host, a pid that no
 * longer runs, or that now belongs to a different process (Linux: another start time), is
 * taken over with a message. A lock from another host cannot be checked and is never taken.
 */
export class LockError extends Data.TaggedError("LockError")<{ readonly dir: string; readonly problem: string }> {
  override get message(): string {
    return `${this.dir}: ${this.problem}`
  }
}

export const LOCK_FILE = "run.lock"

export interface LockHolder {
  readonly pid: number
  readonly host: string
  readonly started: string
  /** The process's start time in clock ticks after boot, and the boot, where Linux tells them. */
  readonly processStart?: string
  readonly command: string
}

/** A process's start (boot id and start ticks) on Linux; it tells a reused pid from the original. */
const processStart = (pid: number): string | undefined => {
  try {
    const boot = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim()
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    // Field 22 (starttime), counted from the state field that follows the command name.
    return `${boot}/${stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]}`
  } catch {
    return undefined
  }
}

const running = (holder: LockHolder): boolean => {
  try {
    process.kill(holder.pid, 0)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") return false
  }
  const now = processStart(holder.pid)
  return holder.processStart === undefined || now === undefined || now === holder.processStart
}

export const describeHolder = (h: LockHolder): string => `pid ${h.pid} on ${h.host}, started ${h.started} (${h.command})`

const parse = (text: string): LockHolder | undefined => {
  try {
    const h = JSON.parse(text) as LockHolder
    return typeof h.pid === "number" && typeof h.host === "string" && typeof h.started === "string" ? h : undefined
  } catch {
    return undefined
  }
}

/**
 * The process that holds the run directory's lock now, if one does. A lock from another host
 * cannot be checked, so it counts as held; a stale or unreadable one does not.
 */
export const lockHolder = (dir: string): Effect.Effect<LockHolder | undefined, never, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const text = yield* fs.readFileString(path.join(dir, LOCK_FILE)).pipe(Effect.orElseSucceed(() => ""))
    const holder = parse(text)
    return holder !== undefined && (holder.host !== hostname() || running(holder)) ? holder : undefined
  })

/**
 * Refuses a run directory another process is training into: its checkpoint is replaced as it
 * trains, and it is not done. `what` says what waits ("export it").
 */
export const refuseWhileTraining = (dir: string, what: string): Effect.Effect<void, LockError, FileSystem.FileSystem | Path.Path> =>
  Effect.flatMap(lockHolder(dir), (holder) =>
    holder === undefined
      ? Effect.void
      : Effect.fail(new LockError({ dir, problem: `the run is still training (${describeHolder(holder)}); ${what} once it has finished, or stop it first (it saves a checkpoint as it stops)` })),
  )

const same = (a: LockHolder, b: LockHolder): boolean => a.pid === b.pid && a.host === b.host && a.started === b.started

/**
 * Holds the run directory's lock for the scope (the directory must exist). `say` reports a
 * stale lock taken over. Failing to create the lock file is how an unwritable directory shows.
 */
export const lockRunDir = (
  dir: string,
  say: (message: string) => Effect.Effect<void>,
): Effect.Effect<void, LockError, FileSystem.FileSystem | Path.Path | Scope.Scope> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const lock = path.join(dir, LOCK_FILE)
    const fail = (problem: string) => new LockError({ dir, problem })
    const me: LockHolder = {
      pid: process.pid,
      host: hostname(),
      started: new Date().toISOString(),
      ...(processStart(process.pid) !== undefined ? { processStart: processStart(process.pid)! } : {}),
      command: [path.basename(process.argv[1] ?? "node", ".ts"), ...process.argv.slice(2)].join(" "),
    }
    const temp = `${lock}.${process.pid}.tmp`
    yield* fs.writeFileString(temp, JSON.stringify(me, null, 2) + "\n").pipe(Effect.mapError((e) => fail(`cannot write to the run directory: ${ioReason(e)}`)))
    const acquire = Effect.gen(function* () {
      for (let attempt = 0; attempt < 5; attempt++) {
        const linked = yield* fs.link(temp, lock).pipe(
          Effect.as(true),
          Effect.catch((e) => (errnoCode(e) === "EEXIST" ? Effect.succeed(false) : Effect.fail(fail(`cannot create ${LOCK_FILE}: ${ioReason(e)}`)))),
        )
        if (linked) return
        const text = yield* fs.readFileString(lock).pipe(Effect.option)
        if (text._tag === "None") continue // released in the meantime
        const holder = parse(text.value)
        if (holder === undefined) return yield* fail(`${LOCK_FILE} is unreadable (${JSON.stringify(text.value.slice(0, 80))}); if no run is using this directory, delete ${lock}`)
        if (holder.host !== me.host)
          return yield* fail(`in use by ${describeHolder(holder)}; if that process has ended, delete ${lock}`)
        if (running(holder)) return yield* fail(`in use by ${describeHolder(holder)}; wait for it to finish, stop it, or train elsewhere with --out`)
        // Stale: move it aside (only one process can move it), and drop it only if it is still the stale one.
        const aside = `${lock}.stale-${process.pid}`
        const moved = yield* fs.rename(lock, aside).pipe(Effect.as(true), Effect.orElseSucceed(() => false))
        if (!moved) continue
        const taken = parse(yield* fs.readFileString(aside).pipe(Effect.orElseSucceed(() => "")))
        if (taken !== undefined && same(taken, holder)) {
          yield* fs.remove(aside).pipe(Effect.ignore)
          yield* say(`${dir}: took over the stale lock of ${describeHolder(holder)}, which no longer runs`)
        } else {
          // A live lock made in the meantime: put it back.
          yield* fs.link(aside, lock).pipe(Effect.ignore)
          yield* fs.remove(aside).pipe(Effect.ignore)
        }
      }
      return yield* fail(`could not take ${LOCK_FILE} after 5 attempts; another process keeps replacing it`)
    })
    yield* Effect.acquireRelease(acquire.pipe(Effect.ensuring(fs.remove(temp).pipe(Effect.ignore))), () =>
      // Only our own lock is removed.
      fs.readFileString(lock).pipe(
        Effect.flatMap((text) => {
          const holder = parse(text)
          return holder !== undefined && same(holder, me) ? fs.remove(lock) : Effect.void
        }),
        Effect.ignore,
      ),
    )
  })
