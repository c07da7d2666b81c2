import { Effect } from "effect"
import { readStories } from "../../src/data/stories.js"
import { sharedDataDir } from "../../src/data/paths.js"

export const devFile = (name: string): string => `${sharedDataDir()}/${name}`

export const devStories = (name: string): Promise<string[]> => Effect.runPromise(readStories(devFile(name)))
