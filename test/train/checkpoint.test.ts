import * as nodeFs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import { createHash } from "node:crypto"
import { NodeServices } from "@effect/platform-node"
import { Effect, FileSystem, Option } from "effect"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { writeFileAtomic } from "../../src/io/atomic-write.js"
import { type Checkpoint, checkpointIdentity, loadCheckpoint, saveCheckpoint } from "../../src/train/checkpoint.js"

const run = <A, E>(effect: Effect.Effect<A, E, FileSystem.FileSystem | import("effect").Path.Path>) =>
  Effect.runPromise(Effect.provide(effect, NodeServices.layer))
const runError = <A, E>(effect: Effect.Effect<A, E, FileSystem.FileSystem | import("effect").Path.Path>) =>
  run(Effect.flip(effect))

/** Runs `effect` with a file system whose open() fails for paths that `broken` selects. */
const withFaultyOpen = <A, E, R>(broken: (path: string) => boolean, effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const faulty: FileSystem.FileSystem = {
      ...fs,
      open: (path, options) => (broken(path) ? Effect.die(new Error(`injected failure opening ${path}`)) : fs.open(path, options)),
    }
    return yield* Effect.provideService(effect, FileSystem.FileSystem, faulty)
  })

const sample = (step: number): Checkpoint => ({
  params: {
    "blocks.0.attn.wq": { shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, step]) },
    "tok.embed": { shape: [4], data: new Float32Array([0.1, -0.2, 0.3, step]) },
  },
  optimizer: {
    "m.blocks.0.attn.wq": { shape: [2, 3], data: new Float32Array(6).fill(step / 10) },
    "v.blocks.0.attn.wq": { shape: [2, 3], data: new Float32Array(6).fill(step / 100) },
  },
  state: {
    step,
    tokensSeen: step * 1024,
    specHash: "abc123",
    dataCursor: { epoch: 0, offset: step * 7 },
    rng: [1, 2, 3, step],
    optimizer: { beta1: 0.9, beta2: 0.95, step },
    extra: { note: "x" },
  },
})

let runDir: string
beforeEach(() => {
  runDir = nodeFs.mkdtempSync(nodePath.join(os.tmpdir(), "ckpt-test-"))
})
afterEach(() => nodeFs.rmSync(runDir, { recursive: true, force: true }))

const ls = () => nodeFs.readdirSync(runDir).sort()
const loaded = async () => Option.getOrThrow(await run(loadCheckpoint(runDir)))

describe("checkpoint", () => {
  it("round-trips tensors and state, recording size and sha256 of the tensor files", async () => {
    expect(Option.isNone(await run(loadCheckpoint(runDir)))).toBe(true)
    const ckpt = sample(3)
    await run(saveCheckpoint(runDir, ckpt))
    expect(ls()).toEqual(["checkpoint"])
    expect(nodeFs.readdirSync(nodePath.join(runDir, "checkpoint")).sort()).toEqual([
      "model.safetensors",
      "optimizer.safetensors",
      "state.json",
    ])
    const state = JSON.parse(nodeFs.readFileSync(nodePath.join(runDir, "checkpoint", "state.json"), "utf8"))
    const model = nodeFs.readFileSync(nodePath.join(runDir, "checkpoint", "model.safetensors"))
    expect(state.format).toBe(1)
    expect(state.files.model).toEqual({ bytes: model.length, sha256: createHash("sha256").update(model).digest("hex") })
    const back = await loaded()
    expect(back.state).toEqual(ckpt.state)
    expect(back.params["blocks.0.attn.wq"]).toEqual({ shape: [2, 3], data: ckpt.params["blocks.0.attn.wq"].data })
    expect(back.optimizer["v.blocks.0.attn.wq"].data).toEqual(ckpt.optimizer["v.blocks.0.attn.wq"].data)

    await run(saveCheckpoint(runDir, sample(4)))
    expect(ls()).toEqual(["checkpoint"])
    expect((await loaded()).state.step).toBe(4)
  })

  it("saves a pruned run's masks beside the weights, checked by size and sha256 like them; a reader of the identity needs no tensors", async () => {
    const masks = { "blocks.0.attn.wq": { shape: [2, 3], data: new Float32Array([1, 0, 1, 0, 0, 1]) } }
    await run(saveCheckpoint(runDir, { ...sample(3), masks }))
    const dir = nodePath.join(runDir, "checkpoint")
    expect(nodeFs.readdirSync(dir).sort()).toEqual(["masks.safetensors", "model.safetensors", "optimizer.safetensors", "state.json"])
    const file = nodeFs.readFileSync(nodePath.join(dir, "masks.safetensors"))
    const state = JSON.parse(nodeFs.readFileSync(nodePath.join(dir, "state.json"), "utf8"))
    expect(state.files.masks).toEqual({ bytes: file.length, sha256: createHash("sha256").update(file).digest("hex") })
    expect((await loaded()).masks).toEqual(masks)
    const model = nodeFs.readFileSync(nodePath.join(dir, "model.safetensors"))
    expect(Option.getOrThrow(await run(checkpointIdentity(runDir)))).toEqual({ specHash: "abc123", step: 3, model: createHash("sha256").update(model).digest("hex") })
    // Without masks the file and its digest are absent.
    await run(saveCheckpoint(runDir, sample(4)))
    expect((await loaded()).masks).toBeUndefined()
    expect(nodeFs.existsSync(nodePath.join(dir, "masks.safetensors"))).toBe(false)
    await run(saveCheckpoint(runDir, { ...sample(5), masks }))
    const corrupt = Buffer.from(nodeFs.readFileSync(nodePath.join(dir, "masks.safetensors")))
    corrupt[corrupt.length - 1] ^= 0xff
    nodeFs.writeFileSync(nodePath.join(dir, "masks.safetensors"), corrupt)
    expect((await runError(loadCheckpoint(runDir))).message).toMatch(/masks\.safetensors: sha256 [0-9a-f]+ differs/)
  })

  it("falls back to checkpoint.prev when a crash hit between the renames, and the next save recovers", async () => {
    await run(saveCheckpoint(runDir, sample(5)))
    nodeFs.renameSync(nodePath.join(runDir, "checkpoint"), nodePath.join(runDir, "checkpoint.prev"))
    expect((await loaded()).state.step).toBe(5)
    await run(saveCheckpoint(runDir, sample(6)))
    expect(ls()).toEqual(["checkpoint"])
    expect((await loaded()).state.step).toBe(6)
  })

  it("ignores a partial checkpoint.next and clears it on the next save", async () => {
    await run(saveCheckpoint(runDir, sample(7)))
    const next = nodePath.join(runDir, "checkpoint.next")
    nodeFs.mkdirSync(next)
    nodeFs.writeFileSync(nodePath.join(next, "model.safetensors"), "partial")
    expect((await loaded()).state.step).toBe(7)
    await run(saveCheckpoint(runDir, sample(8)))
    expect(ls()).toEqual(["checkpoint"])
    expect((await loaded()).state.step).toBe(8)
  })

  it("prefers checkpoint over a leftover checkpoint.prev", async () => {
    await run(saveCheckpoint(runDir, sample(1)))
    nodeFs.cpSync(nodePath.join(runDir, "checkpoint"), nodePath.join(runDir, "checkpoint.prev"), { recursive: true })
    await run(saveCheckpoint(runDir, sample(2)))
    expect(ls()).toEqual(["checkpoint"])
    nodeFs.cpSync(nodePath.join(runDir, "checkpoint"), nodePath.join(runDir, "checkpoint.prev"), { recursive: true })
    await run(saveCheckpoint(runDir, sample(9)))
    expect((await loaded()).state.step).toBe(9)
  })

  it("reports a corrupted or mismatched tensor file by name", async () => {
    await run(saveCheckpoint(runDir, sample(2)))
    const modelPath = nodePath.join(runDir, "checkpoint", "model.safetensors")
    const bytes = nodeFs.readFileSync(modelPath)
    bytes[bytes.length - 1] ^= 1
    nodeFs.writeFileSync(modelPath, bytes)
    const e = await runError(loadCheckpoint(runDir))
    expect(e.message).toContain(modelPath)
    expect(e.message).toMatch(/sha256 .* differs/)

    nodeFs.writeFileSync(modelPath, bytes.subarray(0, 20))
    expect((await runError(loadCheckpoint(runDir))).message).toMatch(/model\.safetensors: file is 20 bytes but state\.json records/)

    nodeFs.rmSync(modelPath)
    expect((await runError(loadCheckpoint(runDir))).message).toContain(modelPath)
  })

  it("reports a malformed state.json by path", async () => {
    await run(saveCheckpoint(runDir, sample(2)))
    const statePath = nodePath.join(runDir, "checkpoint", "state.json")
    const state = JSON.parse(nodeFs.readFileSync(statePath, "utf8"))
    nodeFs.writeFileSync(statePath, JSON.stringify({ ...state, step: -1 }))
    const e = await runError(loadCheckpoint(runDir))
    expect(e.message).toContain(statePath)
    expect(e.message).toContain("step")
    nodeFs.writeFileSync(statePath, "{")
    expect((await runError(loadCheckpoint(runDir))).message).toMatch(/state\.json: not valid JSON/)
  })

  it("rejects an invalid state before touching the disk", async () => {
    await run(saveCheckpoint(runDir, sample(1)))
    const bad = { ...sample(2), state: { ...sample(2).state, tokensSeen: 1.5 } }
    const e = await runError(saveCheckpoint(runDir, bad))
    expect(e.message).toContain("tokensSeen")
    expect(ls()).toEqual(["checkpoint"])
    expect((await loaded()).state.step).toBe(1)
  })

  it("keeps the previous good checkpoint when writing the new one fails", async () => {
    await run(saveCheckpoint(runDir, sample(1)))
    const before = nodeFs.readFileSync(nodePath.join(runDir, "checkpoint", "model.safetensors"))
    for (const victim of ["optimizer.safetensors", "state.json"]) {
      const exit = await Effect.runPromiseExit(
        Effect.provide(withFaultyOpen((p) => p.includes(victim), saveCheckpoint(runDir, sample(2))), NodeServices.layer),
      )
      expect(exit._tag).toBe("Failure")
      expect((await loaded()).state.step).toBe(1)
      expect(nodeFs.readFileSync(nodePath.join(runDir, "checkpoint", "model.safetensors"))).toEqual(before)
    }
    // The directory fsync after the swap is the last write-path step; failing it must still leave a loadable checkpoint.
    const exit = await Effect.runPromiseExit(
      Effect.provide(withFaultyOpen((p) => p === runDir, saveCheckpoint(runDir, sample(3))), NodeServices.layer),
    )
    expect(exit._tag).toBe("Failure")
    expect([1, 3]).toContain((await loaded()).state.step)
  })

  it("fails with a CheckpointError naming the path when the run directory cannot be created", async () => {
    await run(saveCheckpoint(runDir, sample(1)))
    // A run directory inside a regular file: a real ENOTDIR from the operating system.
    const e = await runError(saveCheckpoint(nodePath.join(runDir, "checkpoint", "model.safetensors"), sample(2)))
    expect(e._tag).toBe("CheckpointError")
    expect(e.message).toContain(nodePath.join(runDir, "checkpoint", "model.safetensors", "checkpoint.next"))
    expect((await loaded()).state.step).toBe(1)
  })
})

describe("writeFileAtomic", () => {
  it("replaces the file completely and leaves no temporary files", async () => {
    const file = nodePath.join(runDir, "summary.json")
    await run(writeFileAtomic(file, "old"))
    await run(writeFileAtomic(file, new Uint8Array([104, 105])))
    expect(nodeFs.readFileSync(file, "utf8")).toBe("hi")
    expect(ls()).toEqual(["summary.json"])
  })

  it("writes chunks in order and, when asked, creates the parent directories", async () => {
    const file = nodePath.join(runDir, "cache", "tokens", "x.bin")
    await run(writeFileAtomic(file, [new Uint8Array([1, 2]), new Uint8Array(0), new Uint8Array([3])], { makeDirectory: true }))
    expect([...nodeFs.readFileSync(file)]).toEqual([1, 2, 3])
    expect(nodeFs.readdirSync(nodePath.dirname(file))).toEqual(["x.bin"])
  })

  it("leaves the old file untouched and cleans up when the write fails", async () => {
    const file = nodePath.join(runDir, "spec.json")
    await run(writeFileAtomic(file, "good"))
    const exit = await Effect.runPromiseExit(
      Effect.provide(withFaultyOpen((p) => p === runDir, writeFileAtomic(file, "new")), NodeServices.layer),
    )
    expect(exit._tag).toBe("Failure")
    // The rename happened before the failing directory fsync, so either content is acceptable, never a torn one.
    expect(["good", "new"]).toContain(nodeFs.readFileSync(file, "utf8"))
    const e = await runError(writeFileAtomic(nodePath.join(runDir, "missing-dir", "x.json"), "data"))
    expect(e.message).toMatch(/^cannot write .*missing-dir\/x\.json: /)
    expect(ls()).toEqual(["spec.json"])
  })
})
