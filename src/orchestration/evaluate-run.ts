import { Effect } from "effect"
import { evalBatches } from "../data/batcher.js"
import { resolveDataset } from "../data/dataset.js"
import { DataFormatError } from "../data/errors.js"
import { forEachStory } from "../data/stories.js"
import type { OpenRun } from "./run-dir.js"
import { evaluation, type Evaluation } from "../eval/evaluate.js"
import { stepwise } from "../eval/stepwise.js"
import type { Weights } from "../decode/weights.js"

export interface RunEvaluation extends Evaluation {
  readonly bytesPerToken: number
  readonly file: string
}

/**
 * An opened run evaluated on a story file (default: the validation split of its data), encoded
 * with the run's own tokenizer, in the run's batch and context: what `npm run eval` prints.
 * It yields between batches, so a signal stops it there.
 */
export const evaluateRun = (open: OpenRun, options: { readonly file?: string; readonly tokens?: number; readonly weights?: Weights; readonly onProgress?: (done: number, total: number) => void } = {}) =>
  Effect.gen(function* () {
    const { run, model, params, tokenizer } = open
    const file = options.file ?? (yield* resolveDataset({ extra: run.training.data.extra })).valid
    const ids: number[] = []
    const stats = yield* forEachStory(file, (story) => {
      for (const id of tokenizer.encode(story)) ids.push(id)
      ids.push(tokenizer.eotId)
    })
    if (stats.stories === 0 || ids.length < 2) return yield* new DataFormatError({ path: file, message: `${file}: no story text to evaluate on (${stats.stories} stories)` })
    const tokens = Uint32Array.from(ids)
    const bytesPerToken = stats.bytes / tokens.length
    const limit = options.tokens ?? run.training.eval.tokens
    const batches = evalBatches(tokens, { batch: run.training.batch, context: run.model.context, maxTokens: limit, padId: tokenizer.eotId })
    const total = Math.min(limit, tokens.length - 1)
    const result = yield* stepwise(evaluation(model, params, batches, bytesPerToken, options.weights), (done) => options.onProgress?.(done, total))
    return { ...result, bytesPerToken, file } satisfies RunEvaluation
  })
