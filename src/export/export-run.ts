import { Data, Effect, Path } from "effect"
import { formatPath, policyModule, withPolicy } from "../../dsl/index.js"
import { openRun } from "../orchestration/run-dir.js"
import { replaceDirectory } from "../io/atomic-directory.js"
import { refuseWhileTraining } from "../io/run-lock.js"
import type { DecoderSpec } from "../../dsl/index.js"
import type { TextTokenizer } from "../tokenizer/text-tokenizer.js"
import type { Exported, ExportNote, ExportOptions } from "./exported.js"
import { toGguf } from "./gguf.js"
import { toHuggingFace } from "./hf.js"
import { toLlama2c } from "./llama2c.js"
import type { GgmlType } from "./ggml.js"
import type { Weights } from "./weights.js"

/** The export formats by name: each turns a spec, its weights and tokenizer into files or reasons. */
export const exportFormats = {
  llama2c: toLlama2c,
  hf: toHuggingFace,
  gguf: toGguf,
} as const satisfies Record<string, Exporter>

/** An exporter: a spec, its weights and tokenizer to files or reasons; the note goes where the format has metadata. */
type Exporter = (spec: DecoderSpec, weights: Weights, tokenizer: TextTokenizer, note: ExportNote, options: ExportOptions) => Exported

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
  /** The label of the depth policy left out (--drop-policy). */
  readonly droppedPolicy?: string
}

/**
 * Exports a run's checkpoint into `out` (default `<run>/export/<format>/`, `gguf-<type>/` for gguf), written as a whole
 * directory atomically; the run's own files are only read. Nothing is written when the model
 * cannot be expressed in the format, or while the run is still training. `dropPolicy` exports
 * the model without its depth policy (every block on every position), a different model, which
 * the summary and, where the format has metadata, the files name.
 */
export const exportRun = (dir: string, format: ExportFormat, options: { readonly out?: string; readonly dropPolicy?: boolean; readonly type?: GgmlType } = {}) =>
  Effect.gen(function* () {
    const path = yield* Path.Path
    // Its checkpoint changes under a run that trains, and the export would land in its directory.
    yield* refuseWhileTraining(dir, "export it")
    const open = yield* openRun(dir)
    const policy = open.run.model.layers.policy
    if (options.dropPolicy && policy === undefined) return yield* new ExportError({ dir, format, problems: [`--drop-policy: at ${formatPath(["layers", "policy"])}: the model has no depth policy to drop`] })
    const note: ExportNote = options.dropPolicy && policy ? { droppedPolicy: policyModule(policy).label(policy) } : {}
    const spec = options.dropPolicy ? withPolicy(open.run.model, undefined) : open.run.model
    const weights: Weights = Object.fromEntries(open.model.table.map((p) => [p.name, open.params[p.name]!.dataSync() as Float32Array]))
    const exporter: Exporter = exportFormats[format]
    const result = exporter(spec, weights, open.tokenizer, note, { ...(options.type === undefined ? {} : { type: options.type }), name: `${open.run.experiment}/${open.run.variant}` })
    if (!result.ok) return yield* new ExportError({ dir, format, problems: result.problems })
    // Each GGUF type has its own default directory, so a q8_0 export does not replace the f32 one.
    const target = options.out ?? path.join(dir, "export", format === "gguf" ? `gguf-${options.type ?? "f32"}` : format)
    yield* replaceDirectory(target, result.files, new Set(result.files.map((f) => f.name)))
    return { out: target, files: result.files.map((f) => ({ name: f.name, bytes: f.data.length })), summary: result.summary, ...note } satisfies ExportResult
  })
