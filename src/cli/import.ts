import { Console, Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { importLlama2c } from "../import/import-run.js"
import { runCommand } from "./boundary.js"

/**
 * `npm run import -- <model.bin> --tokenizer <tokenizer.bin> [--out DIR]`: a llama2.c model
 * (legacy version 0, or the "ak42" versions 1 and 2, the int8 one dequantised) made a finished
 * run directory (default runs/imports/<name>) that eval, generate, derive, distillation teachers
 * (`runAt("imports/<name>")`) and pruning sources read; a model the lab cannot express is refused
 * with the header field it cannot, and an existing run is never overwritten.
 */
export const command = Command.make(
  "import",
  {
    model: Argument.String("model.bin").pipe(Argument.withDescription("a llama2.c model.bin (export.py's version 0, 1 or 2)")),
    tokenizer: Flag.String("tokenizer").pipe(Flag.withDescription("the model's llama2.c tokenizer.bin")),
    out: Flag.String("out").pipe(Flag.withDescription("the run directory to make (new or empty; default runs/imports/<model name>)"), Flag.optional),
  },
  (a) =>
    Effect.gen(function* () {
      const out = Option.getOrUndefined(a.out)
      const result = yield* importLlama2c(a.model, a.tokenizer, out !== undefined ? { out } : {})
      const source = result.summary["imported"] as { readonly version: number; readonly dequantised: boolean; readonly groupSize?: number }
      if (source.dequantised) yield* Console.error(`import: version 2 holds int8 weights in groups of ${source.groupSize}; they are dequantised to float32, so the run computes the quantised model`)
      yield* Console.log(JSON.stringify(result.summary, null, 2))
      yield* Console.error(`${result.out}: imported; evaluate it with npm run eval -- ${result.out}`)
    }),
).pipe(Command.withDescription("Import a model trained elsewhere (llama2.c model.bin and tokenizer.bin) as a finished run"))

runCommand(import.meta.url, command)
