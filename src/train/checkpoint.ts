/**
 * The crash-safe checkpoint directory of a run:
 *
 *   <run>/checkpoint/model.safetensors      parameters by name (e.g. `blocks.0.attn.wq`)
 *   <run>/checkpoint/optimizer.safetensors  optimiser tensors by name (e.g. `m.<param>`, `v.<param>`)
 *   <run>/checkpoint/masks.safetensors      a pruned run's weight masks by parameter name (1 keeps, 0 holds at zero)
 *   <run>/checkpoint/state.json             step, tokens, cursors, RNG, spec hash, and the size
 *                                           and sha256 of each tensor file
 *
 * A save writes a complete `checkpoint.next/`, then renames `checkpoint/` → `checkpoint.prev/`
 * and `checkpoint.next/` → `checkpoint/`, then removes `checkpoint.prev/`. Whatever moment a
 * crash hits, one complete checkpoint is on disk: `checkpoint/` if present, otherwise
 * `checkpoint.prev/`. A `checkpoint.next/` is never trusted (it may be partial) and the next
 * save clears it; loading leaves the directory untouched so read-only runs can be evaluated.
 *
 * Tensors are plain Float32Arrays here, so this module does not depend on TensorFlow.js.
 */
import { createHash } from "node:crypto"
import { Data, Effect, FileSystem, Option, Path, Schema } from "effect"
import { ioReason } from "../errors/io-error.js"
import { fsyncDirectory, writeFileAtomic } from "../io/atomic-write.js"
import { makeDirectory } from "../io/make-directory.js"
import { decodeSafetensors, encodeSafetensors } from "./safetensors.js"

export class CheckpointError extends Data.TaggedError("CheckpointError")<{
  readonly path: string
  readonly reason: string
}> {
  override get message(): string {
    return `checkpoint ${this.path}: ${this.reason}`
  }
}

export type TensorArrays = Record<string, { readonly shape: readonly number[]; readonly data: Float32Array }>

const Count = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))

/** Everything besides tensors that a resume needs; the opaque fields must be JSON values. */
export const CheckpointState = Schema.Struct({
  step: Count,
  tokensSeen: Count,
  specHash: Schema.String,
  dataCursor: Schema.Unknown,
  rng: Schema.Unknown,
  /** Optimiser hyper-parameters and step count. */
  optimizer: Schema.Unknown,
  extra: Schema.optional(Schema.Unknown),
})
export type CheckpointState = typeof CheckpointState.Type

export interface Checkpoint {
  readonly params: TensorArrays
  readonly optimizer: TensorArrays
  readonly state: CheckpointState
  /** Only a pruned run has masks. */
  readonly masks?: TensorArrays
}

export const checkpointFormatVersion = 1

const FileDigest = Schema.Struct({ bytes: Count, sha256: Schema.String })

const StateFile = Schema.Struct({
  format: Schema.Literal(checkpointFormatVersion),
  ...CheckpointState.fields,
  files: Schema.Struct({ model: FileDigest, optimizer: FileDigest, masks: Schema.optionalKey(FileDigest) }),
})

const MODEL_FILE = "model.safetensors"
const OPTIMIZER_FILE = "optimizer.safetensors"
const MASKS_FILE = "masks.safetensors"
const STATE_FILE = "state.json"

const sha256 = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex")

const checkpointDirs = (path: Path.Path, runDir: string) => ({
  current: path.join(runDir, "checkpoint"),
  next: path.join(runDir, "checkpoint.next"),
  prev: path.join(runDir, "checkpoint.prev"),
})

const at =
  (where: string) =>
  <A, R>(effect: Effect.Effect<A, { readonly message: string }, R>): Effect.Effect<A, CheckpointError, R> =>
    Effect.mapError(effect, (e) => new CheckpointError({ path: where, reason: ioReason(e) }))

/** Writes a new checkpoint of the run atomically; the previous one survives any failure. */
export const saveCheckpoint = (
  runDir: string,
  checkpoint: Checkpoint,
): Effect.Effect<void, CheckpointError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const dirs = checkpointDirs(path, runDir)
    const statePath = path.join(dirs.next, STATE_FILE)
    const state = yield* at(statePath)(Schema.decodeUnknownEffect(CheckpointState)(checkpoint.state))
    const model = yield* at(path.join(dirs.next, MODEL_FILE))(encodeSafetensors(checkpoint.params))
    const optimizer = yield* at(path.join(dirs.next, OPTIMIZER_FILE))(encodeSafetensors(checkpoint.optimizer))
    const masks = checkpoint.masks === undefined ? undefined : yield* at(path.join(dirs.next, MASKS_FILE))(encodeSafetensors(checkpoint.masks))

    yield* at(dirs.next)(fs.remove(dirs.next, { recursive: true, force: true }))
    const hasCurrent = yield* at(dirs.current)(fs.exists(dirs.current))
    // With both present, a crash hit after `checkpoint/` was completed: the old copy is redundant.
    // Without `checkpoint/`, `checkpoint.prev/` is the only good copy and stays until the swap.
    if (hasCurrent) yield* at(dirs.prev)(fs.remove(dirs.prev, { recursive: true, force: true }))
    yield* at(dirs.next)(makeDirectory(dirs.next))
    yield* writeFileAtomic(path.join(dirs.next, MODEL_FILE), model)
    yield* writeFileAtomic(path.join(dirs.next, OPTIMIZER_FILE), optimizer)
    if (masks !== undefined) yield* writeFileAtomic(path.join(dirs.next, MASKS_FILE), masks)
    const stateFile: typeof StateFile.Type = {
      format: checkpointFormatVersion,
      ...state,
      files: {
        model: { bytes: model.length, sha256: sha256(model) },
        optimizer: { bytes: optimizer.length, sha256: sha256(optimizer) },
        ...(masks === undefined ? {} : { masks: { bytes: masks.length, sha256: sha256(masks) } }),
      },
    }
    yield* writeFileAtomic(statePath, JSON.stringify(stateFile, null, 2) + "\n")

    if (hasCurrent) yield* at(dirs.current)(fs.rename(dirs.current, dirs.prev))
    yield* at(dirs.next)(fs.rename(dirs.next, dirs.current))
    yield* at(runDir)(fsyncDirectory(runDir))
    yield* at(dirs.prev)(fs.remove(dirs.prev, { recursive: true, force: true }))
  }).pipe(Effect.catchTag("AtomicWriteError", (e) => Effect.fail(new CheckpointError({ path: e.path, reason: e.reason }))))

const readTensorFile = (
  file: string,
  digest: typeof FileDigest.Type,
): Effect.Effect<TensorArrays, CheckpointError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const bytes = yield* at(file)(fs.readFile(file))
    const fail = (reason: string) => new CheckpointError({ path: file, reason })
    if (bytes.length !== digest.bytes) {
      return yield* fail(`file is ${bytes.length} bytes but state.json records ${digest.bytes} (corrupt or mismatched checkpoint)`)
    }
    const hash = sha256(bytes)
    if (hash !== digest.sha256) {
      return yield* fail(`sha256 ${hash} differs from ${digest.sha256} recorded in state.json (corrupt or mismatched checkpoint)`)
    }
    const { tensors } = yield* at(file)(decodeSafetensors(bytes, file))
    const out: Record<string, { shape: readonly number[]; data: Float32Array }> = {}
    for (const [name, t] of Object.entries(tensors)) {
      if (t.dtype !== "F32") return yield* fail(`tensor "${name}" has dtype ${t.dtype}, expected F32`)
      out[name] = { shape: t.shape, data: t.data as Float32Array }
    }
    return out
  })

/** The checkpoint directory and its state.json (with the tensor files' digests), `Option.none()` when there is none. */
const readState = (
  runDir: string,
): Effect.Effect<Option.Option<{ readonly dir: string; readonly stateFile: typeof StateFile.Type }>, CheckpointError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const dirs = checkpointDirs(path, runDir)
    const dir = (yield* at(dirs.current)(fs.exists(dirs.current)))
      ? dirs.current
      : (yield* at(dirs.prev)(fs.exists(dirs.prev)))
        ? dirs.prev
        : undefined
    if (dir === undefined) return Option.none()
    const statePath = path.join(dir, STATE_FILE)
    const text = yield* at(statePath)(fs.readFileString(statePath))
    const json = yield* Effect.try({
      try: () => JSON.parse(text) as unknown,
      catch: (e) => new CheckpointError({ path: statePath, reason: `not valid JSON (${e instanceof Error ? e.message : String(e)})` }),
    })
    return Option.some({ dir, stateFile: yield* at(statePath)(Schema.decodeUnknownEffect(StateFile)(json)) })
  })

/** Which weights a checkpoint holds, without reading them: spec hash, step and model.safetensors' sha256. */
export const checkpointIdentity = (
  runDir: string,
): Effect.Effect<Option.Option<{ readonly specHash: string; readonly step: number; readonly model: string; readonly trainedFrom?: unknown }>, CheckpointError, FileSystem.FileSystem | Path.Path> =>
  Effect.map(
    readState(runDir),
    Option.map(({ stateFile: s }) => ({ specHash: s.specHash, step: s.step, model: s.files.model.sha256, trainedFrom: (s.extra as { identity?: unknown } | undefined)?.identity })),
  )

/**
 * Loads the run's checkpoint, `Option.none()` when it has none. Falls back to
 * `checkpoint.prev/` when a crash hit between the two renames of a save.
 */
export const loadCheckpoint = (
  runDir: string,
): Effect.Effect<Option.Option<Checkpoint>, CheckpointError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function* () {
    const path = yield* Path.Path
    const found = yield* readState(runDir)
    if (Option.isNone(found)) return Option.none()
    const { dir, stateFile } = found.value
    const params = yield* readTensorFile(path.join(dir, MODEL_FILE), stateFile.files.model)
    const optimizer = yield* readTensorFile(path.join(dir, OPTIMIZER_FILE), stateFile.files.optimizer)
    const masks = stateFile.files.masks === undefined ? undefined : yield* readTensorFile(path.join(dir, MASKS_FILE), stateFile.files.masks)
    const { format: _format, files: _files, ...state } = stateFile
    return Option.some({ params, optimizer, state, ...(masks === undefined ? {} : { masks }) })
  })
