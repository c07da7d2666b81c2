import { Effect } from "effect"
import { runMain, UsageError } from "../src/cli/boundary.js"

/**
 * `npm run bench -- <name> [flags]`: each benchmark prints its figures as JSON lines.
 * A benchmark is one module under bench/ registered here by name.
 */
const benches: Record<string, () => Promise<{ main: (argv: string[]) => Promise<void> }>> = {
  attention: () => import("./attention.js"),
  generate: () => import("./generate.js"),
  prune: () => import("./prune.js"),
  distill: () => import("./distill.js"),
  tokenizer: () => import("./tokenizer.js"),
  train: () => import("./train.js"),
  variants: () => import("./variants.js"),
}

runMain((argv) =>
  Effect.gen(function* () {
    const [name, ...rest] = argv
    const load = name === undefined ? undefined : benches[name]
    if (load === undefined) return yield* new UsageError({ message: `usage: npm run bench -- <${Object.keys(benches).join(" | ")}> [flags]` })
    // A bench's UsageError (a bad flag) exits 2 with its message; anything else it throws is a defect.
    yield* Effect.tryPromise({ try: async () => (await load()).main(rest), catch: (e) => e }).pipe(
      Effect.catch((e) => (e instanceof UsageError ? Effect.fail(e) : Effect.die(e))),
    )
  }),
)
