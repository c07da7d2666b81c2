import type { Params } from "../model/init.js"
import type { TensorArrays } from "./checkpoint.js"

/**
 * How a run that starts from another run's weights (a pruned run, src/prune/) differs from
 * one trained from scratch: its first weights, the weights it holds at zero, and what its
 * summary adds. A resume restores the checkpoint's weights and masks instead.
 */
export interface WeightMasks {
  /** After optimiser step `step` (1 for the first): recompute the masks if they change then, and zero the masked weights. */
  readonly apply: (params: Params, step: number) => void
  /** The masks for the checkpoint, by parameter name. */
  readonly save: () => TensorArrays
  /** Restores masks saved by `save`; a problem is returned as a message. */
  readonly restore: (saved: TensorArrays) => string | undefined
}

export interface RunStart {
  readonly params: TensorArrays
  readonly masks?: WeightMasks
  /** Fields added to summary.json, from the final weights. */
  readonly summary?: (params: Params) => Record<string, unknown>
}
