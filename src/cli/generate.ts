import { Console, Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { dimsOf } from "../../dsl/nodes.js"
import { chooseBackend } from "../backend/select.js"
import { DepthTrace } from "../depth/trace.js"
import { located } from "../errors/unexpected.js"
import { sampling } from "../eval/generate.js"
import { stepwise } from "../eval/stepwise.js"
import { openRun } from "../orchestration/run-dir.js"
import { Rng } from "../random/rng.js"
import { runCommand, UsageError } from "./boundary.js"
import { backendFlag, int8Unavailable, intFlag, numberFlag, seedRange, weightsFlag } from "./flags.js"

/**
 * `npm run generate -- <run-dir> --prompt "..." [--weights int8]`: samples a continuation from a run's checkpoint,
 * then says on stderr how fast, and how many blocks and FLOPs each position took.
 */
export const command = Command.make(
  "generate",
  {
    dir: Argument.String("run-dir").pipe(Argument.withDescription("a run directory (with spec.json and checkpoint/)")),
    prompt: Flag.String("prompt").pipe(Flag.withDefault("Once upon a time")),
    tokens: intFlag("tokens", { min: 1, max: 1_000_000 }).pipe(Flag.withDescription("new tokens at most"), Flag.withDefault(200)),
    temperature: numberFlag("temperature", { min: 0 }).pipe(Flag.withDescription("0 picks the likeliest token"), Flag.withDefault(0.8)),
    topK: intFlag("top-k", { min: 0 }).pipe(Flag.withDescription("0 keeps all tokens"), Flag.withDefault(40)),
    topP: numberFlag("top-p", { min: 0, minExclusive: true, max: 1 }).pipe(Flag.withDefault(0.95)),
    seed: intFlag("seed", seedRange).pipe(Flag.withDefault(1)),
    backend: backendFlag,
    weights: weightsFlag,
  },
  (a) =>
    Effect.scoped(
      Effect.gen(function* () {
        yield* chooseBackend(Option.getOrUndefined(a.backend))
        const { model, params, tokenizer } = yield* openRun(a.dir)
        const refused = int8Unavailable(model, a.weights)
        if (refused !== undefined) return yield* refused
        const text = Array.from(tokenizer.encode(a.prompt))
        if (text.length === 0) return yield* new UsageError({ message: "--prompt is empty; give the text to continue" })
        const prompt = [...tokenizer.promptStart, ...text]
        const trace = new DepthTrace()
        const options = { temperature: a.temperature, topK: a.topK > 0 ? a.topK : undefined, topP: a.topP, tokens: a.tokens, stop: tokenizer.eotId, trace, weights: a.weights }
        const started = performance.now()
        // Token by token, so a signal stops it between two tokens.
        const ids = yield* stepwise(sampling(model, params, prompt, options, Rng.derive(a.seed, "sample")))
        const seconds = (performance.now() - started) / 1000
        yield* Console.log(a.prompt + tokenizer.decode(ids.filter((id) => id !== tokenizer.eotId)))
        yield* Console.error(
          `${ids.length} tokens in ${seconds.toFixed(2)} s (${(ids.length / seconds).toFixed(1)} tokens/s); ` +
            `${trace.blocksPerToken.toFixed(2)} of ${dimsOf(model.spec).layers} blocks and ${(trace.flopsPerToken / 1e6).toFixed(3)} MFLOPs per position (prompt included)`,
        )
      }),
    ).pipe(located({ runDir: a.dir })),
).pipe(Command.withDescription("Sample a story from a trained run"))

runCommand(import.meta.url, command)
