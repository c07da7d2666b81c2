/** What a finished run writes to its summary.json: its figures, read by results, the report and the ledger. */
export interface Summary {
  readonly experiment: string
  readonly variant: string
  readonly seed: number
  readonly specHash: string
  readonly valLoss: number
  readonly valBpb: number
  readonly valTokens: number
  /**
   * The text the val figures (and a target's) were measured on: "valid" (valid.txt) or
   * "tune (last N train stories)" (src/data/holdout.ts). Absent in summaries written before it
   * was recorded: valid.txt.
   */
  readonly evalText?: string
  /** Validation figures at longer sequence lengths, by length (only those the position scheme supports). */
  readonly lengths: Readonly<Record<string, { readonly loss: number; readonly bpb: number }>>
  readonly trainLoss: number
  readonly params: { readonly total: number; readonly nonEmbedding: number; readonly embedding: number }
  readonly flopsPerToken: { readonly forward: number; readonly training: number }
  /**
   * FLOPs (training: forward and backward, 3× the forward count) and blocks per position
   * actually spent in training and in the final evaluation: below the nominal figures when a
   * depth policy skips blocks or tokens. Absent from summaries written before it was recorded.
   */
  readonly spent?: { readonly training: Spent; readonly eval: Spent }
  /** FLOPs of one optimiser update beyond the model's passes (Muon's Newton–Schulz products; 0 for AdamW). Absent from summaries written before it was recorded. */
  readonly optimizerFlopsPerStep?: number
  /** A budget with a target (`bpb`): when a periodic evaluation first reached it, or null when the budget ran out first. */
  readonly target?: { readonly bpb: number; readonly reached: Reached | null }
  readonly tokenizer: string
  readonly tokenizerHash: string
  readonly tokenBudget: number
  readonly tokensTrained: number
  /** Optimiser steps trained (fewer than the budget when its target was reached). */
  readonly steps: number
  readonly wallSeconds: number
  /** Seconds spent in optimiser steps (evaluation, sampling and start-up excluded). */
  readonly trainSeconds: number
  /** Training throughput: tokens trained / trainSeconds. */
  readonly tokensPerSecond: number
  /**
   * The most tensor memory an optimiser step held beyond the weights and optimiser state kept
   * between steps (activations, gradients, update temporaries), in bytes. Measured on the
   * native backend only; a process's first step, which also creates the optimiser moments,
   * does not count.
   */
  readonly stepPeakBytes?: number
  readonly backend: string
  /** What the backend said of itself: for the native one, its ISA, threads and matmul precision (fp32 or bf16). */
  readonly backendDetail: string
  /** Host name and CPU model (absent in summaries written before it was recorded). */
  readonly machine?: string
  /** ISO 8601, when the run finished; its ledger record carries the same time (absent in summaries written before it was recorded). */
  readonly finishedAt?: string
  readonly sample: string
}

/** Where a run first reached its target: the step, and what it had spent by then (training time without evaluations, tokens, training FLOPs). */
export interface Reached {
  readonly step: number
  readonly valBpb: number
  readonly tokens: number
  readonly trainSeconds: number
  /** Forward and backward FLOPs spent in training (3× the forward FLOPs its positions ran). */
  readonly trainingFlops: number
  /** The optimiser's FLOPs by then beyond those (Muon's Newton–Schulz products); absent where recorded before it was counted. */
  readonly optimizerFlops?: number
}

export interface Spent {
  readonly flopsPerToken: number
  readonly blocksPerToken: number
}
