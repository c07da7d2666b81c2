import { join } from "node:path"
import { Effect } from "effect"
import { downloadFile, type DownloadResult } from "../data/download.js"
import { cacheDir } from "../data/paths.js"
import { ImportError, importLlama2c, target } from "./import-run.js"

/**
 * llama2.c's published models by name (`npm run import -- download <name>`): fetched with the
 * data download's resumable, size- and sha256-checked code into `<cache>/llama2c/`, then
 * imported as a local model.bin and tokenizer.bin are.
 */

/** The header of a legacy (version 0) model.bin; every one here has a shared classifier and one key/value head per head. */
export interface Llama2cConfig {
  readonly dim: number
  readonly hiddenDim: number
  readonly layers: number
  readonly heads: number
  readonly vocab: number
  readonly seqLen: number
}

export interface PublishedModel {
  readonly config: Llama2cConfig
  /** The file's size, from its config: 28 header bytes and float32 weights (see the test). */
  readonly bytes: number
  readonly sha256?: string
  /** Where `sha256` was read, said with it: it is only as good as its source. */
  readonly sha256Source?: string
}

/** karpathy/tinyllamas at the commit the sizes and hash were taken from; /resolve/<commit>/ keeps the files from changing under them. */
export const TINYLLAMAS_COMMIT = "58e1696980dcbdf80b2dfe876819104a174f5e78"
export const TINYLLAMAS_URL = `https://huggingface.co/karpathy/tinyllamas/resolve/${TINYLLAMAS_COMMIT}`
/** llama2.c's default 32,000-token SentencePiece tokenizer, which the tinyllamas models use. */
export const LLAMA2C_TOKENIZER_URL = "https://raw.githubusercontent.com/karpathy/llama2.c/master/tokenizer.bin"

const vocab = 32000

export const LLAMA2C_MODELS: Readonly<Record<string, PublishedModel>> = {
  stories15M: {
    config: { dim: 288, hiddenDim: 768, layers: 6, heads: 6, vocab, seqLen: 256 },
    bytes: 60_816_028,
    // Not published by the model's author: taken from a third-party download script.
    sha256: "cd590644d963867a2b6e5a1107f51fad663c41d79c149fbecbbb1f95fa81f49a",
    sha256Source: "a third-party download script (Hugging Face LFS object of tinyllamas at 58e1696)",
  },
  stories42M: { config: { dim: 512, hiddenDim: 1376, layers: 8, heads: 8, vocab, seqLen: 1024 }, bytes: 167_020_572 },
  stories110M: { config: { dim: 768, hiddenDim: 2048, layers: 12, heads: 12, vocab, seqLen: 1024 }, bytes: 438_381_596 },
}

export interface DownloadImportOptions {
  readonly out?: string
  /** The cache root (default `TINYSTORIES_CACHE` or <repo>/.cache). */
  readonly cache?: string
  /** One mirror for both files, `<base>/<name>.bin` and `<base>/tokenizer.bin`, instead of their hosts. */
  readonly baseUrl?: string
  /** The models by name, for tests; default LLAMA2C_MODELS. */
  readonly models?: Readonly<Record<string, PublishedModel>>
  readonly progress?: boolean
}

/** What a downloaded file's sha256 was checked against, in words for the output and provenance. */
const hashCheck = (result: DownloadResult, published: string | undefined, source: string | undefined): string =>
  published !== undefined
    ? `checked against the published sha256 (from ${source})`
    : result.checked.includes("sha256")
      ? "checked against the sha256 the host announced (X-Linked-Etag)"
      : "NOT checked: no published sha256 for this file; the computed one is recorded"

/** The cached file, downloaded if missing; a cached file is checked as a download is. */
const fetchChecked = (url: string, dest: string, expected: { readonly bytes?: number; readonly sha256?: string; readonly sha256Source?: string }, progress: boolean) =>
  Effect.gen(function* () {
    const result = yield* downloadFile({ url, dest, progress, ...(expected.bytes !== undefined ? { size: expected.bytes } : {}), ...(expected.sha256 !== undefined ? { sha256: expected.sha256 } : {}) }).pipe(
      Effect.mapError((e) => new ImportError({ problem: e.message })),
    )
    const stale = (what: string) => new ImportError({ problem: `${dest}: the cached file ${what}; delete it to download it again` })
    if (result.skipped && expected.bytes !== undefined && result.bytes !== expected.bytes) return yield* stale(`has ${result.bytes} bytes, expected ${expected.bytes}`)
    if (result.skipped && expected.sha256 !== undefined && result.sha256 !== expected.sha256) return yield* stale(`has sha256 ${result.sha256}, expected ${expected.sha256}`)
    return { url, bytes: result.bytes, sha256: result.sha256, sha256Check: hashCheck(result, expected.sha256, expected.sha256Source), cached: result.skipped }
  })

/** Downloads the model `name` and llama2.c's tokenizer.bin, then imports them; the output directory is checked first. */
export const downloadAndImport = (name: string, options: DownloadImportOptions = {}) =>
  Effect.gen(function* () {
    const models = options.models ?? LLAMA2C_MODELS
    const published = models[name]
    if (published === undefined) return yield* new ImportError({ problem: `unknown model ${JSON.stringify(name)}; the models are ${Object.keys(models).join(", ")}` })
    yield* target(name, options.out)
    const dir = join(cacheDir(options.cache), "llama2c")
    const progress = options.progress ?? false
    const model = yield* fetchChecked(options.baseUrl !== undefined ? `${options.baseUrl}/${name}.bin` : `${TINYLLAMAS_URL}/${name}.bin`, join(dir, `${name}.bin`), published, progress)
    const tokenizer = yield* fetchChecked(options.baseUrl !== undefined ? `${options.baseUrl}/tokenizer.bin` : LLAMA2C_TOKENIZER_URL, join(dir, "tokenizer.bin"), {}, progress)
    const result = yield* importLlama2c(join(dir, `${name}.bin`), join(dir, "tokenizer.bin"), { ...(options.out !== undefined ? { out: options.out } : {}), download: { model, tokenizer } })
    return { ...result, download: { model, tokenizer } }
  })
