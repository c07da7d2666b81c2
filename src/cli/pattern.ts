import * as tf from "@tensorflow/tfjs"
import { Console, Data, Effect, Option, Result } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { block, decodeSpec, decoder, depth, ffn } from "../../dsl/index.js"
import { attention, attentionKinds, attentionModule, type AttentionKindTag, type AttentionSpec } from "../../dsl/kinds/attention/index.js"
import { attends, measurePattern } from "../attention/pattern.js"
import { encodePng } from "../report/png.js"
import { patternImage } from "../report/pattern-picture.js"
import { writeFileAtomic } from "../io/atomic-write.js"
import { outFileProblem } from "../io/out-file.js"
import { runCommand, UsageError } from "./boundary.js"
import { intFlag } from "./flags.js"

/**
 * `npm run pattern -- <kind> [--context N] [--layer L] [--head H] [--out file.png] ['{"stride":8}']`:
 * draws which query (row, top to bottom) attends to which key (column, left to right) in one
 * head of one layer, as measured from the kind's computation (src/attention/pattern.ts).
 * Black: attended; red: attended although later than the query (not causal).
 */
class PatternError extends Data.TaggedError("PatternError")<{ readonly message: string }> {}

/** Options that make each kind drawable at a small context; the JSON argument overrides them. */
const defaults: Record<AttentionKindTag, object> = {
  full: { heads: 4 },
  "sparse-strided": { heads: 4, stride: 8 },
  "sparse-fixed": { heads: 4, stride: 8, summary: 2 },
  "sliding-window": { heads: 4, window: 8 },
  longformer: { heads: 4, window: 8, global: [0] },
  linformer: { heads: 4, k: 8 },
  "linformer-causal": { heads: 4, k: 8, block: 8 },
}

/** The kind's spec, checked as part of a decoder with the layer's depth (so per-layer options are validated). */
const specOf = (kind: string, json: string | undefined, context: number, layer: number): Result.Result<AttentionSpec, PatternError> => {
  if (!Object.hasOwn(attentionKinds, kind)) return Result.fail(new PatternError({ message: `unknown attention kind "${kind}"; expected one of ${Object.keys(attentionKinds).join(", ")}` }))
  const tag = kind as AttentionKindTag
  let options: object
  try {
    options = { ...defaults[tag], ...(json === undefined ? {} : (JSON.parse(json) as object)) }
  } catch (e) {
    return Result.fail(new PatternError({ message: `options are not JSON: ${(e as Error).message}` }))
  }
  const spec = (attention as (k: AttentionKindTag, o: object) => AttentionSpec)(tag, options)
  const windows = "window" in spec && typeof spec.window !== "number" ? spec.window.length : 0
  const model = decoder({ vocab: 2, width: spec.heads * 8, context, layers: depth(Math.max(layer + 1, windows), block({ attention: spec, ffn: ffn("relu") })), allowNonCausal: true })
  const decoded = decodeSpec(JSON.parse(JSON.stringify(model)))
  return Result.isFailure(decoded) ? Result.fail(new PatternError({ message: decoded.failure.message })) : Result.succeed(spec)
}

/** A picture replaces only a PNG. */
const png = { name: "PNG picture", starts: (head: Uint8Array) => head.length >= 4 && head[0] === 0x89 && head[1] === 0x50 && head[2] === 0x4e && head[3] === 0x47 }

export const command = Command.make(
  "pattern",
  {
    kind: Argument.String("kind").pipe(Argument.withDescription(`an attention kind: ${Object.keys(attentionKinds).join(", ")}`)),
    options: Argument.String("options").pipe(Argument.withDescription("the kind's options as JSON, over the defaults"), Argument.optional),
    // The measurement and the drawing grow with context² (query × key pairs).
    context: intFlag("context", { min: 1, max: 4096 }).pipe(Flag.withDefault(64)),
    layer: intFlag("layer", { min: 0 }).pipe(Flag.withDefault(0)),
    head: intFlag("head", { min: 0 }).pipe(Flag.withDefault(0)),
    out: Flag.String("out").pipe(Flag.optional),
  },
  (a) =>
    Effect.gen(function* () {
      yield* Effect.promise(() => tf.setBackend("cpu"))
      const spec = yield* Effect.fromResult(specOf(a.kind, Option.getOrUndefined(a.options), a.context, a.layer))
      if (a.head >= spec.heads) return yield* new UsageError({ message: `--head ${a.head} is not one of the ${spec.heads} heads (0 to ${spec.heads - 1})` })
      const out = Option.getOrElse(a.out, () => `pattern-${a.kind}.png`)
      const problem = yield* outFileProblem(out, png)
      if (problem !== undefined) return yield* new UsageError({ message: problem })
      const seen = attends(measurePattern(spec, { context: a.context, layer: a.layer, head: a.head }), a.context)
      // One cell per query/key pair, scaled up to about 768 pixels.
      const { size, rgb } = patternImage(seen, Math.max(1, Math.floor(768 / a.context)))
      yield* writeFileAtomic(out, encodePng(size, size, rgb)).pipe(Effect.mapError((e) => new PatternError({ message: e.message })))
      const keys = seen.flat().filter(Boolean).length
      const future = seen.flatMap((row, i) => row.filter((s, j) => s && j > i)).length
      yield* Console.log(
        `${out}: ${attentionModule(spec).label(spec)}, layer ${a.layer}, head ${a.head}, context ${a.context}: ` +
          `${(keys / a.context).toFixed(1)} keys per query on average, ${future} query/key pairs look ahead`,
      )
    }),
).pipe(Command.withDescription("Draw an attention kind's pattern (query × key) to a PNG"))

runCommand(import.meta.url, command)
