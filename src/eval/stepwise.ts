import { Effect } from "effect"

/**
 * Long synchronous loops (evaluation batches, sampled tokens) written as generators, one
 * `yield` per unit of work. `drain` runs one to the end; `stepwise` runs it as an Effect that
 * yields to the event loop between units, so a signal can interrupt it there, and closes the
 * generator (its `finally` blocks run) when it is interrupted.
 */
export const drain = <Y, R>(gen: Generator<Y, R>, onStep?: (value: Y) => void): R => {
  for (;;) {
    const r = gen.next()
    if (r.done) return r.value
    onStep?.(r.value)
  }
}

export const stepwise = <Y, R>(gen: Generator<Y, R>, onStep?: (value: Y) => void): Effect.Effect<R> =>
  Effect.gen(function* () {
    for (;;) {
      const r = gen.next()
      if (r.done) return r.value
      onStep?.(r.value)
      yield* Effect.yieldNow
    }
  }).pipe(Effect.ensuring(Effect.sync(() => void gen.return(undefined as never))))
