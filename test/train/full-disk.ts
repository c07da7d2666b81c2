import { NodeServices } from "@effect/platform-node"
import { Effect, FileSystem, Layer } from "effect"
import { systemError } from "effect/PlatformError"

/**
 * The Node file system with a disk that fills up: once `budget` bytes have been written
 * (through open/write, writeFile or writeFileString), a write stores what still fits and then
 * fails as Node does, with ENOSPC, the way a full disk tears a write. `writes` lists every
 * write (the file, and the bytes written before it), so a test can aim at one.
 */
export interface FullDisk {
  readonly layer: Layer.Layer<FileSystem.FileSystem>
  readonly writes: ReadonlyArray<{ readonly path: string; readonly before: number; readonly bytes: number }>
}

const enospc = (method: string, where: string | number) =>
  systemError({
    _tag: "Unknown",
    module: "FileSystem",
    method,
    pathOrDescriptor: where,
    cause: Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC", errno: -28, syscall: "write" }),
  })

export const fullDiskAfter = (budget: number): FullDisk => {
  let written = 0
  const writes: Array<{ path: string; before: number; bytes: number }> = []
  const room = () => Math.max(0, budget - written)
  const layer = Layer.effect(
    FileSystem.FileSystem,
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const wrap = (file: FileSystem.File, path: string): FileSystem.File => {
        // Delegates to the real file (its methods read `this.fd`); only writes are metered.
        const metered: FileSystem.File = Object.create(file)
        const writeAll = (bytes: Uint8Array): Effect.Effect<void, ReturnType<typeof enospc>> =>
          Effect.suspend(() => {
            const fits = Math.min(bytes.length, room())
            writes.push({ path, before: written, bytes: bytes.length })
            written += fits
            const part = fits > 0 ? file.writeAll.call(metered, bytes.subarray(0, fits)) : Effect.void
            return fits === bytes.length ? part : Effect.andThen(part, Effect.fail(enospc("writeAll", (file as unknown as { fd: number }).fd)))
          })
        return Object.assign(metered, { writeAll, write: (bytes: Uint8Array) => Effect.as(writeAll(bytes), bytes.length) })
      }
      const whole = (path: string, bytes: number) =>
        Effect.suspend(() => {
          writes.push({ path, before: written, bytes })
          if (bytes <= room()) {
            written += bytes
            return Effect.void
          }
          written = budget
          return Effect.fail(enospc("writeFile", path))
        })
      return {
        ...fs,
        open: (path, options) => Effect.map(fs.open(path, options), (file) => wrap(file, path)),
        writeFile: (path, data, options) => Effect.andThen(whole(path, data.length), fs.writeFile(path, data, options)),
        writeFileString: (path, data, options) => Effect.andThen(whole(path, Buffer.byteLength(data)), fs.writeFileString(path, data, options)),
      } satisfies FileSystem.FileSystem
    }),
  ).pipe(Layer.provide(NodeServices.layer))
  return { layer, writes }
}
