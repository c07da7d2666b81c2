import * as tf from "@tensorflow/tfjs"
import { NodeServices } from "@effect/platform-node"
import { Console, Deferred, Effect, Exit, Layer } from "effect"
import { cpSync, mkdtempSync, rmSync } from "node:fs"
import { hostname, tmpdir } from "node:os"
import { join } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import type { RunSpec } from "../../src/experiment/define.js"
import { trainSources } from "../../src/orchestration/prerequisites.js"
import type { RunRef } from "../../src/experiment/run-ref.js"
import { fromRun } from "../../src/experiment/warm-start/index.js"
import { lockRunDir } from "../../src/io/run-lock.js"
import { ProgressSink } from "../../src/io/progress.js"
import { trainRun } from "../../src/train/run.js"
import { waitFor } from "../cli/process.js"
import { syntheticData, tinyRun } from "../train/fixtures.js"

/**
 * Shards of a sweep started together share a source run (a teacher, a warm-start or pruning
 * source): one trains it, the others wait for it. Here this process holds the source's lock
 * (as the shard training it would) while another fiber makes the source ready.
 */
const tmp = () => mkdtempSync(join(tmpdir(), "shards-test-"))
const said: string[] = []
const quiet = Layer.succeed(ProgressSink, { isTTY: false, columns: () => 80, write: () => {}, now: () => performance.now() })
const console = Object.assign(Object.create(globalThis.console) as Console.Console, { error: (...args: ReadonlyArray<unknown>) => void said.push(args.join(" ").trim()) })
const run = <A, E>(e: Effect.Effect<A, E, any>) =>
  Effect.runPromiseExit(Effect.scoped(e).pipe(Effect.provideService(Console.Console, console), Effect.provide(Layer.merge(NodeServices.layer, quiet))) as Effect.Effect<A, E>)
const options = { backend: { name: "cpu", detail: "test" }, resumeCommand: "(test)" }
const errorOf = (exit: Exit.Exit<unknown, unknown>): string => {
  if (Exit.isSuccess(exit)) throw new Error("expected a failure")
  const failure = exit.cause.reasons.find((r) => r._tag === "Fail")
  return failure && "error" in failure ? (failure.error as { message: string }).message : String(exit.cause)
}

/** A finished source run, and a student that starts from the run at `dir`. */
let finished: string
const student = (ref: RunRef): RunSpec => ({ ...tinyRun({ steps: 1 }), experiment: "student", init: fromRun(ref) })

/** Holds `dir`'s lock until `release` is called. */
const holdLock = async (dir: string) => {
  const released = Effect.runSync(Deferred.make<void>())
  const held = Effect.runSync(Deferred.make<void>())
  const done = run(Effect.andThen(lockRunDir(dir, () => Effect.void), Effect.andThen(Deferred.succeed(held, undefined), Deferred.await(released))))
  await Effect.runPromise(Deferred.await(held))
  return async () => {
    Effect.runSync(Deferred.succeed(released, undefined))
    expect(Exit.isSuccess(await done)).toBe(true)
  }
}

describe("a source another shard is training", () => {
  beforeAll(async () => {
    await tf.setBackend("cpu")
    finished = join(tmp(), "source")
    expect(Exit.isSuccess(await run(trainRun(tinyRun({ steps: 3 }), syntheticData(), { ...options, out: finished, fresh: false })))).toBe(true)
  })

  it("is waited for, saying which run and how far it has got, then used without training it again", async () => {
    const dir = join(tmp(), "source")
    // Started: the shard training it has written its spec and three steps.
    cpSync(finished, dir, { recursive: true })
    rmSync(join(dir, "summary.json"))
    const release = await holdLock(dir)
    said.length = 0
    let over = false
    const waiting = run(trainSources([student({ run: dir, experiment: "smoke" })], options, { pollMillis: 5, progressMillis: 20 })).finally(() => (over = true))
    await waitFor(() => said.some((l) => l.startsWith("still waiting")), 30_000)
    expect(said[0]).toMatch(new RegExp(`^warm-start source ${dir} is being trained by pid ${process.pid} on ${hostname()}, started .*; waiting for it to finish$`))
    expect(said).toContain(`still waiting for warm-start source ${dir}: at step 3`)
    expect(over).toBe(false)
    // The other shard finishes it and lets go.
    cpSync(join(finished, "summary.json"), join(dir, "summary.json"))
    await release()
    const exit = await waiting
    expect(Exit.isSuccess(exit), String(Exit.isFailure(exit) && exit.cause)).toBe(true)
    expect(said.some((l) => l.includes("training it first"))).toBe(false)
  })

  it("that stops before finishing it is reported with the command that finishes it", async () => {
    const dir = join(tmp(), "source")
    cpSync(finished, dir, { recursive: true })
    rmSync(join(dir, "summary.json"))
    const release = await holdLock(dir)
    said.length = 0
    const waiting = run(trainSources([student({ run: dir, experiment: "smoke" })], options, { pollMillis: 5, progressMillis: 1000 }))
    await waitFor(() => said.length > 0, 30_000)
    await release()
    expect(errorOf(await waiting)).toMatch(
      new RegExp(`^base \\(seed 1\\): warm-start source ${dir}: pid ${process.pid} on ${hostname()}, started .* stopped before finishing it \\(no summary\\.json\\); finish it with npm run exp smoke$`),
    )
  })

  it("is refused at once when it is unfinished and nothing trains it", async () => {
    const dir = join(tmp(), "source")
    cpSync(finished, dir, { recursive: true })
    rmSync(join(dir, "summary.json"))
    said.length = 0
    expect(errorOf(await run(trainSources([student({ run: dir, experiment: "smoke" })], options)))).toBe(
      `base (seed 1): warm-start source ${dir}: the run is unfinished (no summary.json) and no process is training it (it failed or was interrupted); finish it first with npm run exp smoke`,
    )
    expect(said).toEqual([])
  })
})
