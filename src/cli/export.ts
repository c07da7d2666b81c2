import { Console, Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { chooseBackend } from "../backend/select.js"
import { exportFormats, exportRun, isExportFormat } from "../export/export-run.js"
import { ggufTypes } from "../export/gguf.js"
import { runCommand, UsageError } from "./boundary.js"

/**
 * `npm run export -- <run-dir> --format llama2c|hf|gguf [--type f32|f16|q8_0] [--out DIR] [--drop-policy]`:
 * writes a run's checkpoint in another runtime's format (llama2.c's run.c, Hugging Face
 * transformers, llama.cpp's GGUF with its tensor type) and
 * prints what it wrote as JSON; a model the format cannot express is refused with every reason.
 */
const formats = Object.keys(exportFormats).join(" | ")
const types = ggufTypes.join(" | ")
const isGgufType = (t: string): t is (typeof ggufTypes)[number] => (ggufTypes as readonly string[]).includes(t)

export const command = Command.make(
  "export",
  {
    dir: Argument.String("run-dir").pipe(Argument.withDescription("a run directory (with spec.json and checkpoint/)")),
    format: Flag.String("format").pipe(Flag.withDescription(formats)),
    type: Flag.String("type").pipe(Flag.withDescription(`gguf only: the matrices' type, ${types} (default f32)`), Flag.optional),
    out: Flag.String("out").pipe(Flag.withDescription("the directory to write (default <run-dir>/export/<format>, gguf-<type> for gguf)"), Flag.optional),
    dropPolicy: Flag.Boolean("drop-policy").pipe(
      Flag.withDescription("export the model without its depth policy (every block on every position): a different model, named in the output"),
      Flag.withDefault(false),
    ),
  },
  (a) =>
    Effect.scoped(
      Effect.gen(function* () {
        if (!isExportFormat(a.format)) return yield* new UsageError({ message: `--format ${a.format}: unknown format; expected ${formats}` })
        const type = Option.getOrUndefined(a.type)
        if (type !== undefined && a.format !== "gguf") return yield* new UsageError({ message: `--type ${type}: only --format gguf has tensor types` })
        if (type !== undefined && !isGgufType(type)) return yield* new UsageError({ message: `--type ${type}: unknown type; expected ${types}` })
        yield* chooseBackend()
        const out = Option.getOrUndefined(a.out)
        const result = yield* exportRun(a.dir, a.format, { ...(out !== undefined ? { out } : {}), ...(type !== undefined ? { type } : {}), dropPolicy: a.dropPolicy })
        if (result.droppedPolicy !== undefined)
          yield* Console.error(`export: dropped the depth policy ${result.droppedPolicy}; the exported model runs every block on every position, unlike the run's`)
        yield* Console.log(JSON.stringify({ format: a.format, ...result }, null, 2))
      }),
    ),
).pipe(Command.withDescription("Export a run's model for llama2.c, Hugging Face transformers or llama.cpp (GGUF)"))

runCommand(import.meta.url, command)
