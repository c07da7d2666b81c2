import { Console, Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { resolve } from "node:path"
import { measures } from "../../dsl/kinds/depth/early-exit.js"
import { blocksExpected, exitsAt, keptBlocks, parseBlocks } from "../orchestration/depth-variants.js"
import { deriveRun } from "../orchestration/derive-run.js"
import { runCommand, UsageError } from "./boundary.js"
import { numberFlag } from "./flags.js"

/**
 * `npm run derive -- <run-dir> --out DIR (--keep-blocks every-other|0,2,4 | --threshold T [--measure M])`:
 * a new run directory whose model is the trained one with only some blocks (renamed
 * blocks.{i} → blocks.{j}; a LayerDrop model loses its policy, an early-exit or routed one is
 * refused), or with its early exits at another
 * threshold. It evaluates, generates and summarises (`npm run exp DIR/spec.json -- --out DIR`)
 * like any run.
 */

export const command = Command.make(
  "derive",
  {
    dir: Argument.String("run-dir").pipe(Argument.withDescription("a trained run directory (with spec.json and checkpoint/)")),
    out: Flag.String("out").pipe(Flag.withDescription("the new run directory (must be new or empty)")),
    keepBlocks: Flag.String("keep-blocks").pipe(
      Flag.filterMap((text) => Option.map(Option.fromUndefinedOr(parseBlocks(text)), (which) => ({ which, label: text })), () => blocksExpected),
      Flag.withDescription(blocksExpected),
      Flag.optional,
    ),
    threshold: numberFlag("threshold", { min: -1, max: 1 }).pipe(Flag.withDescription("early exit: the confidence a token needs to leave"), Flag.optional),
    measure: Flag.Literals("measure", measures).pipe(Flag.withDescription("early exit: softmax (top-1 minus top-2) or saturation (cosine of hidden states)"), Flag.optional),
  },
  (a) =>
    Effect.gen(function* () {
      const keep = Option.getOrUndefined(a.keepBlocks)
      const threshold = Option.getOrUndefined(a.threshold)
      const measure = Option.getOrUndefined(a.measure)
      const exits = threshold !== undefined || measure !== undefined
      if ((keep === undefined) === !exits) return yield* new UsageError({ message: "give either --keep-blocks, or --threshold and/or --measure, not both" })
      const derived = yield* deriveRun(resolve(a.dir), resolve(a.out), (run) =>
        keep !== undefined
          ? keptBlocks(run.model, keep.which, keep.label)
          : exitsAt(run.model, { ...(threshold !== undefined ? { threshold } : {}), ...(measure !== undefined ? { measure } : {}) }),
      )
      yield* Console.log(`${resolve(a.out)}: ${derived.variant}\nsummarise it with: npm run exp ${resolve(a.out, "spec.json")} -- --out ${resolve(a.out)}`)
    }),
).pipe(Command.withDescription("Derive a run directory from a trained run: some of its blocks, or early exits at another threshold"))

runCommand(import.meta.url, command)
