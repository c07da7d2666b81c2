import { Console, Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { chooseBackend } from "../backend/select.js"
import { exportFormats, exportRun, isExportFormat } from "../export/export-run.js"
import { runCommand, UsageError } from "./boundary.js"

/**
 * `npm run export -- <run-dir> --format llama2c|hf [--out DIR] [--drop-policy]`: writes a run's
 * checkpoint in another runtime's format (llama2.c's run.c, Hugging Face transformers) and
 * prints what it wrote as JSON; a model the format cannot express is refused with every reason.
 */
const formats = Object.keys(exportFormats).join(" | ")

export const command = Command.make(
  "export",
  {
    dir: Argument.String("run-dir").pipe(Argument.withDescription("a run directory (with spec.json and checkpoint/)")),
    format: Flag.String("format").pipe(Flag.withDescription(formats)),
    out: Flag.String("out").pipe(Flag.withDescription("the directory to write (default <run-dir>/export/<format>)"), Flag.optional),
    dropPolicy: Flag.Boolean("drop-policy").pipe(
      Flag.withDescription("export the model without its depth policy (every block on every position): a different model, named in the output"),
      Flag.withDefault(false),
    ),
  },
  (a) =>
    Effect.scoped(
      Effect.gen(function* () {
        if (!isExportFormat(a.format)) return yield* new UsageError({ message: `--format ${a.format}: unknown format; expected ${formats}` })
        yield* chooseBackend()
        const out = Option.getOrUndefined(a.out)
        const result = yield* exportRun(a.dir, a.format, { ...(out !== undefined ? { out } : {}), dropPolicy: a.dropPolicy })
        if (result.droppedPolicy !== undefined)
          yield* Console.error(`export: dropped the depth policy ${result.droppedPolicy}; the exported model runs every block on every position, unlike the run's`)
        yield* Console.log(JSON.stringify({ format: a.format, ...result }, null, 2))
      }),
    ),
).pipe(Command.withDescription("Export a run's model for llama2.c or Hugging Face transformers"))

runCommand(import.meta.url, command)
