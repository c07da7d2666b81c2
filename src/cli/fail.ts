import { Console, Effect } from "effect"

/**
 * Expected failures (bad experiment, unreadable data, mismatched checkpoint, ...) end the
 * command with their one-line message and exit code 1, never a stack trace.
 */
export const failWith = <A, E extends { readonly message: string }, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A | void, never, R> =>
  effect.pipe(
    Effect.catch((e: E) =>
      Console.error(`error: ${e.message}`).pipe(Effect.andThen(Effect.sync(() => void (process.exitCode = 1)))),
    ),
  )
