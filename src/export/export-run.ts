import { Data, Effect, Path } from "effect"
import { openRun } from "../experiment/run-dir.js"
import { replaceDirectory } from "../io/atomic-directory.js"
import { refuseWhileTraining } from "../io/run-lock.js"
import type { Exported } from "./exported.js"
import { toHuggingFace } from "./hf.js"
import { toLlama2c } from "./llama2c.js"
import type { Weights } from "./weights.js"

/** The export formats by name: each turns a spec, its weights and tokenizer into files or reasons. */
export const exportFormats = {
  llama2c: toLlama2c,
  hf: toHuggingFace,
} as const satisfies Record<string, (...args: Parameters<typeof toLlama2c>) => Exported>

export type ExportFormat = keyof typeof exportFormats

export const isExportFormat = (name: string): name is ExportFormat => Object.hasOwn(exportFormats, name)

export class ExportError extends Data.TaggedError("ExportError")<{ readonly dir: string; readonly format: string; readonly problems: ReadonlyArray<string> }> {
  override get message(): string {
    return `${this.dir}: cannot export to ${this.format}:\n${this.problems.map((p) => `  - ${p}`).join("\n")}`
  }
}

export interface ExportResult {
  readonly out: string
  readonly files: ReadonlyArray<{ readonly name: string; readonly bytes: number }>
  readonly summary: Readonly<Record<string, unknown>>
}

/**
 * Exports a run's checkpoint into `out` (default `<run>/export/<format>/`), written as a whole
 * directory atomically; the run's own files are only read. Nothing is written when the model
 * cannot be expressed in the format, or while the run is still training.
 */
export const exportRun = (dir: string, format: ExportFormat, out?: string) =>
  Effect.gen(function* () {
    const path = yield* Path.Path
    // Its checkpoint changes under a run that trains, and the export would land in its directory.
    yield* refuseWhileTraining(dir, "export it")
    const open = yield* openRun(dir)
    const weights: Weights = Object.fromEntries(open.model.table.map((p) => [p.name, open.params[p.name]!.dataSync() as Float32Array]))
    const result = exportFormats[format](open.run.model, weights, open.tokenizer)
    if (!result.ok) return yield* new ExportError({ dir, format, problems: result.problems })
    const target = out ?? path.join(dir, "export", format)
    yield* replaceDirectory(target, result.files, new Set(result.files.map((f) => f.name)))
    return { out: target, files: result.files.map((f) => ({ name: f.name, bytes: f.data.length })), summary: result.summary } satisfies ExportResult
  })
