import { Effect } from "effect"
import { type DataError, DataFormatError } from "./errors.js"
import { forEachStory } from "./stories.js"

/**
 * Training stories held out as a tuning text, so that choices can be made without looking at
 * valid.txt. They are the last stories of the first training file (train.txt: the same V1 text
 * as valid.txt, and the same stories with or without `extra`); every copy of one of them is
 * left out of training too, since TinyStories repeats stories and the V2 text of `extra`
 * repeats V1's GPT-4 ones.
 */
export interface Holdout {
  /** The held-out stories, in file order. */
  readonly stories: readonly string[]
  /** The first training file's stories from this index on are the held-out ones. */
  readonly from: number
}

/**
 * The last `count` stories of `file` (`onStory` sees each story read, for progress); fails,
 * naming the field, unless some of its stories are left to train on.
 */
export const holdOut = (file: string, count: number, onStory: (story: string) => void = () => {}): Effect.Effect<Holdout, DataError> =>
  Effect.gen(function* () {
    // A ring of the last `count` stories: one pass in bounded memory over the 2 GB file.
    const ring: string[] = []
    let next = 0
    const { stories } = yield* forEachStory(file, (story) => {
      ring[next] = story
      next = (next + 1) % count
      onStory(story)
    })
    if (stories <= count) {
      return yield* new DataFormatError({
        path: file,
        message: `training.data.tune.stories: ${count} leaves no story to train on: ${file} holds ${stories}; expected fewer than ${stories}`,
      })
    }
    return { stories: [...ring.slice(next), ...ring.slice(0, next)], from: stories - count }
  })

/**
 * For one read of the training files in order: given a file's index, a test of each of its
 * stories in turn, true for one to train on. Counts the first file's stories, so make one per read.
 */
export const trainingFilter = (holdout: Holdout | undefined): ((file: number) => (story: string) => boolean) => {
  if (holdout === undefined) return () => () => true
  const held = new Set(holdout.stories)
  return (file) => {
    let index = 0
    return (story) => !(file === 0 && index++ >= holdout.from) && !held.has(story)
  }
}
