import { Data } from "effect"
import { posencModule } from "../../dsl/kinds/posenc/index.js"
import { dimsOf } from "../../dsl/nodes.js"
import { availableMemory } from "../backend/available-memory.js"
import type { BackendChoice } from "../backend/select.js"
import type { RunSpec } from "../experiment/define.js"
import type { LedgerOptions } from "./ledger.js"
import { estimateTraining, type MemoryLimit, memoryProblem } from "./estimate.js"
import type { RunStart } from "./start.js"

/** What every phase of a run (src/train/run.ts) fails with: one message. */
export class RunError extends Data.TaggedError("RunError")<{ readonly problem: string }> {
  override get message(): string {
    return this.problem
  }
}

export interface RunOptions {
  readonly out: string
  /** Discard an unfinished run's checkpoint (it is replaced at the first new one). */
  readonly fresh: boolean
  readonly backend: BackendChoice
  /** How to resume, for the message printed on interruption. */
  readonly resumeCommand: string
  /** Where to record the finished run (absent: not recorded, as in tests of the loop itself). */
  readonly ledger?: LedgerOptions
  /** Refuse a run whose memory estimate exceeds this (default: the memory available now). */
  readonly memoryLimit?: MemoryLimit
  /** Start from given weights (with masks) instead of the seeded initialisation: a pruned run. */
  readonly start?: RunStart
}

/** The longer sequence lengths a run evaluates after training: those its position scheme can represent. */
export const longerLengths = (run: RunSpec): ReadonlyArray<number> => {
  const maxLength = posencModule(run.model.posenc).maxLength?.(run.model.posenc, dimsOf(run.model))
  return (run.training.eval.lengths ?? []).filter((l) => maxLength === undefined || l <= maxLength)
}

/** Why this machine cannot train the run, from its spec's memory estimate; undefined when it fits. */
export const runMemoryProblem = (run: RunSpec, limit: MemoryLimit = availableMemory()): string | undefined =>
  memoryProblem(estimateTraining(run.model, { ...run.training, evalLengths: longerLengths(run) }), { ...run.training, context: run.model.context }, limit)
