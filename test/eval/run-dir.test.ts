import * as tf from "@tensorflow/tfjs"
import { NodeServices } from "@effect/platform-node"
import { Effect, FileSystem, Layer, Option } from "effect"
import { cpSync, mkdtempSync, renameSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { openRun } from "../../src/orchestration/run-dir.js"
import { loadCheckpoint, saveCheckpoint } from "../../src/train/checkpoint.js"

/**
 * Opening a run directory while its run saves a new checkpoint: eval and generate read
 * state.json and then the tensor files, and a save may swap `checkpoint/` in between.
 */
beforeAll(async () => {
  await tf.setBackend("cpu")
})

const fixture = join(import.meta.dirname, "../fixtures/pre-stack/gpt2")
const run = <A, E>(effect: Effect.Effect<A, E, any>, fs: Layer.Layer<FileSystem.FileSystem> = NodeServices.layer) =>
  Effect.runPromise(Effect.scoped(effect).pipe(Effect.provide(Layer.merge(NodeServices.layer, fs))) as Effect.Effect<A, E>)

describe("opening a run whose checkpoint is being replaced", () => {
  it("reads the new checkpoint whole when a save swaps it in mid-read", async () => {
    const dir = join(mkdtempSync(join(tmpdir(), "run-dir-")), "run")
    cpSync(fixture, dir, { recursive: true })
    // The next checkpoint of the same run: every weight moved a little.
    const side = mkdtempSync(join(tmpdir(), "next-"))
    await run(
      Effect.gen(function* () {
        const ck = Option.getOrThrow(yield* loadCheckpoint(dir))
        const params = Object.fromEntries(Object.entries(ck.params).map(([k, t]) => [k, { shape: t.shape, data: t.data.map((x) => x + 0.01) }]))
        yield* saveCheckpoint(side, { ...ck, params })
      }),
    )
    // The save's renames happen right after this reader has read state.json, before the tensors.
    let swapped = false
    const racing = Layer.effect(
      FileSystem.FileSystem,
      Effect.map(FileSystem.FileSystem, (fs): FileSystem.FileSystem => ({
        ...fs,
        readFile: (path: string) => {
          if (!swapped && path === join(dir, "checkpoint", "model.safetensors")) {
            swapped = true
            cpSync(join(side, "checkpoint"), join(dir, "checkpoint.next"), { recursive: true })
            renameSync(join(dir, "checkpoint"), join(dir, "checkpoint.prev"))
            renameSync(join(dir, "checkpoint.next"), join(dir, "checkpoint"))
            rmSync(join(dir, "checkpoint.prev"), { recursive: true })
          }
          return fs.readFile(path)
        },
      })),
    ).pipe(Layer.provide(NodeServices.layer))
    const before = tf.memory().numTensors
    const weights = await run(
      Effect.gen(function* () {
        const open = yield* openRun(dir)
        return Object.fromEntries(Object.entries(open.params).map(([k, t]) => [k, Array.from(t.dataSync())]))
      }),
      racing,
    )
    expect(swapped).toBe(true)
    const next = await run(loadCheckpoint(side))
    for (const [name, t] of Object.entries(Option.getOrThrow(next).params)) expect(weights[name]).toEqual(Array.from(t.data))
    expect(tf.memory().numTensors).toBe(before)
  })
})
