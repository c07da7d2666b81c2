import { Console, Effect, FileSystem, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { importHuggingFace, importLlama2c } from "../import/import-run.js"
import { runCommand, UsageError } from "./boundary.js"

/**
 * `npm run import -- <model.bin> --tokenizer <tokenizer.bin> [--out DIR]` or
 * `npm run import -- <hf-dir> [--out DIR]`: a model trained elsewhere (a llama2.c model.bin of
 * version 0, 1 or 2, the int8 one dequantised; a Hugging Face LlamaForCausalLM or
 * GPT2LMHeadModel directory) made a finished run directory (default runs/imports/<name>) that
 * eval, generate, derive, distillation teachers (`runAt("imports/<name>")`) and pruning sources
 * read. A model the lab cannot express is refused with the field it cannot, and an existing run
 * is never overwritten.
 */
const usage = "usage: npm run import -- <model.bin> --tokenizer <tokenizer.bin> [--out DIR] | <hf-dir> [--out DIR]"

export const command = Command.make(
  "import",
  {
    model: Argument.String("model").pipe(Argument.withDescription("a llama2.c model.bin (export.py's version 0, 1 or 2), or a Hugging Face directory")),
    tokenizer: Flag.String("tokenizer").pipe(Flag.withDescription("the llama2.c model's tokenizer.bin"), Flag.optional),
    out: Flag.String("out").pipe(Flag.withDescription("the run directory to make (new or empty; default runs/imports/<model name>)"), Flag.optional),
  },
  (a) =>
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const out = Option.getOrUndefined(a.out)
      const tokenizer = Option.getOrUndefined(a.tokenizer)
      const options = out !== undefined ? { out } : {}
      const info = yield* fs.stat(a.model).pipe(Effect.mapError(() => new UsageError({ message: `${a.model}: no such file or directory\n${usage}` })))
      const directory = info.type === "Directory"
      if (directory && tokenizer !== undefined) return yield* new UsageError({ message: `--tokenizer is for a llama2.c model.bin; the Hugging Face directory ${a.model} has its tokenizer.json\n${usage}` })
      if (!directory && tokenizer === undefined) return yield* new UsageError({ message: `${a.model}: a llama2.c model.bin needs --tokenizer <tokenizer.bin>\n${usage}` })
      const result = directory ? yield* importHuggingFace(a.model, options) : yield* importLlama2c(a.model, tokenizer!, options)
      const source = result.summary.imported as { readonly dequantised: boolean; readonly groupSize?: number }
      if (source.dequantised) yield* Console.error(`import: version 2 holds int8 weights in groups of ${source.groupSize}; they are dequantised to float32, so the run computes the quantised model`)
      yield* Console.log(JSON.stringify(result.summary, null, 2))
      yield* Console.error(`${result.out}: imported; evaluate it with npm run eval -- ${result.out}`)
    }),
).pipe(Command.withDescription("Import a model trained elsewhere (llama2.c model.bin and tokenizer.bin, or a Hugging Face directory) as a finished run"))

runCommand(import.meta.url, command)
