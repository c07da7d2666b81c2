import { Console, Effect, FileSystem, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { downloadAndImport, LLAMA2C_MODELS } from "../import/download.js"
import { importHuggingFace, importLlama2c } from "../import/import-run.js"
import { runCommand, UsageError } from "./boundary.js"

/**
 * `npm run import -- <model.bin> --tokenizer <tokenizer.bin> [--out DIR]`,
 * `npm run import -- <hf-dir> [--out DIR]` or
 * `npm run import -- download <name> [--out DIR] [--cache DIR] [--base-url URL]`: a model
 * trained elsewhere (a llama2.c model.bin of version 0, 1 or 2, the int8 one dequantised; a
 * Hugging Face LlamaForCausalLM or GPT2LMHeadModel directory; llama2.c's published models by
 * name, downloaded into the cache) made a finished run directory (default runs/imports/<name>) that
 * eval, generate, derive, distillation teachers (`runAt("imports/<name>")`) and pruning sources
 * read. A model the lab cannot express is refused with the field it cannot, and an existing run
 * is never overwritten.
 */
const usage = `usage: npm run import -- <model.bin> --tokenizer <tokenizer.bin> [--out DIR] | <hf-dir> [--out DIR] | download <${Object.keys(LLAMA2C_MODELS).join("|")}> [--out DIR] [--cache DIR] [--base-url URL]`

/** A local llama2.c model.bin with its tokenizer.bin, or a Hugging Face directory. */
const local = (model: string, tokenizer: string | undefined, options: { readonly out?: string }) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const info = yield* fs.stat(model).pipe(Effect.mapError(() => new UsageError({ message: `${model}: no such file or directory\n${usage}` })))
    const directory = info.type === "Directory"
    if (directory && tokenizer !== undefined) return yield* new UsageError({ message: `--tokenizer is for a llama2.c model.bin; the Hugging Face directory ${model} has its tokenizer.json\n${usage}` })
    if (!directory && tokenizer === undefined) return yield* new UsageError({ message: `${model}: a llama2.c model.bin needs --tokenizer <tokenizer.bin>\n${usage}` })
    return directory ? yield* importHuggingFace(model, options) : yield* importLlama2c(model, tokenizer!, options)
  })

/** `download <name>`: llama2.c's published model and tokenizer, fetched into the cache and imported. */
const download = (name: string | undefined, o: { readonly out?: string; readonly cache?: string; readonly baseUrl?: string }) =>
  Effect.gen(function* () {
    if (name === undefined || !Object.hasOwn(LLAMA2C_MODELS, name))
      return yield* new UsageError({ message: `${name === undefined ? "download needs a model name" : `unknown model ${JSON.stringify(name)}`}; the models are ${Object.keys(LLAMA2C_MODELS).join(", ")}\n${usage}` })
    const result = yield* downloadAndImport(name, { ...o, progress: true })
    for (const file of [result.download.model, result.download.tokenizer]) yield* Console.error(`import: ${file.url}: ${file.bytes} bytes${file.cached ? " (cached)" : ""}, sha256 ${file.sha256} ${file.sha256Check}`)
    return result
  })

export const command = Command.make(
  "import",
  {
    model: Argument.String("model").pipe(Argument.withDescription("a llama2.c model.bin (export.py's version 0, 1 or 2), a Hugging Face directory, or download")),
    name: Argument.String("name").pipe(Argument.withDescription(`after download: ${Object.keys(LLAMA2C_MODELS).join(", ")}`), Argument.optional),
    tokenizer: Flag.String("tokenizer").pipe(Flag.withDescription("the llama2.c model's tokenizer.bin"), Flag.optional),
    out: Flag.String("out").pipe(Flag.withDescription("the run directory to make (new or empty; default runs/imports/<model name>)"), Flag.optional),
    cache: Flag.String("cache").pipe(Flag.withDescription("download: the cache root (files go to <cache>/llama2c/; default TINYSTORIES_CACHE or .cache)"), Flag.optional),
    baseUrl: Flag.String("base-url").pipe(Flag.withDescription("download: a mirror holding <name>.bin and tokenizer.bin, instead of Hugging Face and GitHub"), Flag.optional),
  },
  (a) =>
    Effect.gen(function* () {
      const out = Option.getOrUndefined(a.out)
      const tokenizer = Option.getOrUndefined(a.tokenizer)
      const name = Option.getOrUndefined(a.name)
      const cache = Option.getOrUndefined(a.cache)
      const baseUrl = Option.getOrUndefined(a.baseUrl)
      const options = out !== undefined ? { out } : {}
      const downloading = a.model === "download"
      if (!downloading && name !== undefined) return yield* new UsageError({ message: `unexpected argument ${JSON.stringify(name)}\n${usage}` })
      if (!downloading && (cache !== undefined || baseUrl !== undefined)) return yield* new UsageError({ message: `--cache and --base-url are for download\n${usage}` })
      if (downloading && tokenizer !== undefined) return yield* new UsageError({ message: `--tokenizer is for a local model.bin; download fetches llama2.c's tokenizer.bin\n${usage}` })
      const result = downloading
        ? yield* download(name, { ...options, ...(cache !== undefined ? { cache } : {}), ...(baseUrl !== undefined ? { baseUrl } : {}) })
        : yield* local(a.model, tokenizer, options)
      const source = result.summary.imported as { readonly dequantised: boolean; readonly groupSize?: number }
      if (source.dequantised) yield* Console.error(`import: version 2 holds int8 weights in groups of ${source.groupSize}; they are dequantised to float32, so the run computes the quantised model`)
      yield* Console.log(JSON.stringify(result.summary, null, 2))
      yield* Console.error(`${result.out}: imported; evaluate it with npm run eval -- ${result.out}`)
    }),
).pipe(Command.withDescription("Import a model trained elsewhere (llama2.c model.bin and tokenizer.bin, a Hugging Face directory, or llama2.c's published models by name) as a finished run"))

runCommand(import.meta.url, command)
