import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Console, Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { dimsOf } from "../../dsl/nodes.js"
import { chooseBackend } from "../backend/select.js"
import { DepthTrace } from "../depth/trace.js"
import { generate } from "../eval/generate.js"
import { samplingOptionsProblem } from "../eval/sampling.js"
import { openRun, RunDirError } from "../experiment/run-dir.js"
import { Rng } from "../random/rng.js"
import { failWith } from "./fail.js"

/**
 * `npm run generate -- <run-dir> --prompt "..."`: samples a continuation from a run's checkpoint,
 * then says on stderr how fast, and how many blocks and FLOPs each position took.
 */
const command = Command.make(
  "generate",
  {
    dir: Argument.String("run-dir").pipe(Argument.withDescription("a run directory (with spec.json and checkpoint/)")),
    prompt: Flag.String("prompt").pipe(Flag.withDefault("Once upon a time")),
    tokens: Flag.Int("tokens").pipe(Flag.withDescription("new tokens at most"), Flag.withDefault(200)),
    temperature: Flag.Finite("temperature").pipe(Flag.withDefault(0.8)),
    topK: Flag.Int("top-k").pipe(Flag.withDescription("0 keeps all tokens"), Flag.withDefault(40)),
    topP: Flag.Finite("top-p").pipe(Flag.withDefault(0.95)),
    seed: Flag.Int("seed").pipe(Flag.withDefault(1)),
    backend: Flag.String("backend").pipe(Flag.optional),
  },
  (a) =>
    Effect.scoped(
      Effect.gen(function* () {
        const sampling = { temperature: a.temperature, topK: a.topK > 0 ? a.topK : undefined, topP: a.topP }
        const problem = samplingOptionsProblem(sampling)
        if (problem !== undefined) return yield* new RunDirError({ dir: a.dir, problem })
        yield* chooseBackend(Option.getOrUndefined(a.backend))
        const { model, params, tokenizer } = yield* openRun(a.dir)
        const prompt = Array.from(tokenizer.encode(a.prompt))
        if (prompt.length === 0) return yield* new RunDirError({ dir: a.dir, problem: "the prompt is empty" })
        const trace = new DepthTrace()
        const started = performance.now()
        const ids = generate(model, params, prompt, { ...sampling, tokens: a.tokens, stop: tokenizer.eotId, trace }, Rng.derive(a.seed, "sample"))
        const seconds = (performance.now() - started) / 1000
        yield* Console.log(a.prompt + tokenizer.decode(ids.filter((id) => id !== tokenizer.eotId)))
        yield* Console.error(
          `${ids.length} tokens in ${seconds.toFixed(2)} s (${(ids.length / seconds).toFixed(1)} tokens/s); ` +
            `${trace.blocksPerToken.toFixed(2)} of ${dimsOf(model.spec).layers} blocks and ${(trace.flopsPerToken / 1e6).toFixed(3)} MFLOPs per position (prompt included)`,
        )
      }),
    ).pipe(failWith),
).pipe(Command.withDescription("Sample a story from a trained run"))

Command.run(command, { version: "0.1.0" }).pipe(Effect.provide(NodeServices.layer), NodeRuntime.runMain({ disableErrorReporting: true }))
