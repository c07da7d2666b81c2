import type { DepthCosts } from "../../dsl/costs.js"

/** Decisions to impose instead of making them: for early exit, the block each position leaves after, per row. */
export interface Replay {
  readonly exits?: ReadonlyArray<ReadonlyArray<number>>
}

export interface TraceTotals {
  readonly tokens: number
  readonly flops: number
  readonly ran: ReadonlyArray<number>
}

/**
 * The compute forward passes actually spent, counted from the parts each position ran (the
 * costs of dsl/costs.ts), and the decisions a depth policy made. One trace may follow many
 * calls (a whole evaluation, a training run, a generation with its cache).
 */
export class DepthTrace {
  /** Positions that went through the model. */
  tokens = 0
  /** Forward FLOPs spent on them. */
  flops = 0
  /** Per block, the positions that ran it in full. */
  readonly ran: number[] = []
  /** Early exit: for each row, the block each position left after, in order (appended across cached calls). */
  readonly exits: number[][] = []

  constructor(readonly replay: Replay = {}) {}

  /** The counts, as a checkpoint keeps them. */
  totals(): TraceTotals {
    return { tokens: this.tokens, flops: this.flops, ran: [...this.ran] }
  }

  /** A trace that continues from saved counts. */
  static resume(totals: TraceTotals | undefined): DepthTrace {
    const trace = new DepthTrace()
    if (totals !== undefined) {
      trace.tokens = totals.tokens
      trace.flops = totals.flops
      trace.ran.push(...totals.ran)
    }
    return trace
  }

  /** `n` positions enter the model, each costing `each` FLOPs outside the blocks. */
  enter(n: number, each: number): void {
    this.tokens += n
    this.flops += n * each
  }

  /** `positions` ran block `block` in full, `each` FLOPs apiece. */
  block(block: number, positions: number, each: number): void {
    this.ran[block] = (this.ran[block] ?? 0) + positions
    this.flops += positions * each
  }

  spend(flops: number): void {
    this.flops += flops
  }

  /** What the plain decoder spends on `n` positions: every block and the LM head. */
  dense(costs: DepthCosts, n: number): void {
    this.enter(n, costs.base + costs.head)
    costs.blocks.forEach((c, i) => this.block(i, n, c.full))
  }

  get flopsPerToken(): number {
    return this.tokens === 0 ? 0 : this.flops / this.tokens
  }

  /** Blocks run in full per position, on average. */
  get blocksPerToken(): number {
    return this.tokens === 0 ? 0 : this.ran.reduce((a, b) => a + (b ?? 0), 0) / this.tokens
  }
}
