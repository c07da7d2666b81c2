import { Console, Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { chooseBackend } from "../backend/select.js"
import { exportFormats, exportRun, isExportFormat } from "../export/export-run.js"
import { runCommand, UsageError } from "./boundary.js"

/**
 * `npm run export -- <run-dir> --format llama2c|hf [--out DIR]`: writes a run's checkpoint in
 * another runtime's format (llama2.c's run.c, Hugging Face transformers) and prints what it
 * wrote as JSON; a model the format cannot express is refused with every reason.
 */
const formats = Object.keys(exportFormats).join(" | ")

export const command = Command.make(
  "export",
  {
    dir: Argument.String("run-dir").pipe(Argument.withDescription("a run directory (with spec.json and checkpoint/)")),
    format: Flag.String("format").pipe(Flag.withDescription(formats)),
    out: Flag.String("out").pipe(Flag.withDescription("the directory to write (default <run-dir>/export/<format>)"), Flag.optional),
  },
  (a) =>
    Effect.scoped(
      Effect.gen(function* () {
        if (!isExportFormat(a.format)) return yield* new UsageError({ message: `--format ${a.format}: unknown format; expected ${formats}` })
        yield* chooseBackend()
        const result = yield* exportRun(a.dir, a.format, Option.getOrUndefined(a.out))
        yield* Console.log(JSON.stringify({ format: a.format, ...result }, null, 2))
      }),
    ),
).pipe(Command.withDescription("Export a run's model for llama2.c or Hugging Face transformers"))

runCommand(import.meta.url, command)
