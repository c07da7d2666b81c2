import type { GgmlType } from "./ggml.js"

/** What an exporter produces: the files of the export directory, or every reason the model cannot be expressed. */
export interface ExportFile {
  readonly name: string
  readonly data: Uint8Array
}

export type Exported =
  | { readonly ok: true; readonly files: ReadonlyArray<ExportFile>; readonly summary: Readonly<Record<string, unknown>> }
  | { readonly ok: false; readonly problems: ReadonlyArray<string> }

/**
 * What the user asked to leave out of the export, recorded in the files where the format has
 * a place for it: the label of a depth policy dropped with --drop-policy.
 */
export interface ExportNote {
  readonly droppedPolicy?: string
}

/** Choices for formats that have them: the tensor type of a GGUF file, the model's name in its metadata. */
export interface ExportOptions {
  readonly type?: GgmlType
  readonly name?: string
}

export const jsonFile = (name: string, value: unknown): ExportFile => ({ name, data: new TextEncoder().encode(`${JSON.stringify(value, null, 2)}\n`) })
