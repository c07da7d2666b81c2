import { Rng } from "../random/rng.js"
import type { TokenArray } from "./token-file.js"

/** `batch` rows of `context + 1` tokens (inputs = row[0..context), targets = row[1..context]). */
export interface Batch {
  readonly batch: number
  readonly context: number
  /** batch × (context + 1), row-major. */
  readonly tokens: Int32Array
  /** batch × context: 1 where the target at that position counts in the loss, 0 for padding. */
  readonly mask: Float32Array
}

/** Plain JSON: store it in a checkpoint and pass it to `Batcher.restore`. */
export interface BatchCursor {
  readonly seed: number
  readonly batch: number
  readonly context: number
  /** Length of the token stream it belongs to, checked on restore. */
  readonly streamLength: number
  readonly epoch: number
  /** Position in the epoch's window order of the next window to emit. */
  readonly index: number
}

export interface BatcherOptions {
  readonly batch: number
  readonly context: number
  readonly seed: number
  /** Token written into padding positions (their mask is 0); default 0. */
  readonly padId?: number
}

const checkShape = (batch: number, context: number, length: number): void => {
  if (!Number.isInteger(batch) || batch < 1) throw new Error(`batch must be a positive integer, got ${batch}`)
  if (!Number.isInteger(context) || context < 1) throw new Error(`context must be a positive integer, got ${context}`)
  if (length < 2) throw new Error(`token stream has ${length} token(s): at least 2 are needed for one target`)
}

/** Number of windows: window i starts at i·context, so each token is a target exactly once. */
const windowCount = (length: number, context: number): number => Math.ceil((length - 1) / context)

/** Copies window `w` into row `row`; a short final window is padded with `padId`, mask 0. */
const fillRow = (tokens: TokenArray, w: number, context: number, row: number, out: Batch, padId: number): void => {
  const start = w * context
  const len = Math.min(context + 1, tokens.length - start)
  const base = row * (context + 1)
  for (let t = 0; t < len; t++) out.tokens[base + t] = tokens[start + t]!
  out.tokens.fill(padId, base + len, base + context + 1)
  out.mask.fill(1, row * context, row * context + len - 1)
  out.mask.fill(0, row * context + len - 1, (row + 1) * context)
}

const emptyBatch = (batch: number, context: number): Batch => ({
  batch,
  context,
  tokens: new Int32Array(batch * (context + 1)),
  mask: new Float32Array(batch * context),
})

/**
 * Endless training batches over one token stream. Each epoch visits every window once in an
 * order shuffled by `Rng.derive(seed, "data/epoch/<n>")`; batches run on across epoch ends, so
 * every row holds a window and only the stream's short final window carries padding.
 */
export class Batcher {
  readonly windowsPerEpoch: number
  private readonly padId: number
  private epoch: number
  private index: number
  private order: Uint32Array

  private constructor(
    private readonly tokens: TokenArray,
    private readonly options: BatcherOptions,
    epoch: number,
    index: number,
  ) {
    checkShape(options.batch, options.context, tokens.length)
    if (!Number.isInteger(options.seed)) throw new Error(`seed must be an integer, got ${options.seed}`)
    this.windowsPerEpoch = windowCount(tokens.length, options.context)
    this.padId = options.padId ?? 0
    this.epoch = epoch
    this.index = index
    this.order = this.orderFor(epoch)
  }

  static create(tokens: TokenArray, options: BatcherOptions): Batcher {
    return new Batcher(tokens, options, 0, 0)
  }

  /** Resumes exactly where `cursor` was taken, on the same token stream. */
  static restore(tokens: TokenArray, cursor: BatchCursor, padId?: number): Batcher {
    if (cursor.streamLength !== tokens.length) {
      throw new Error(`cursor belongs to a stream of ${cursor.streamLength} tokens, not ${tokens.length}`)
    }
    const b = new Batcher(tokens, { batch: cursor.batch, context: cursor.context, seed: cursor.seed, ...(padId !== undefined ? { padId } : {}) }, cursor.epoch, cursor.index)
    if (!Number.isInteger(cursor.index) || cursor.index < 0 || cursor.index >= b.windowsPerEpoch) {
      throw new Error(`cursor index ${cursor.index} is outside [0, ${b.windowsPerEpoch})`)
    }
    return b
  }

  /** The position before the next batch. */
  get cursor(): BatchCursor {
    return {
      seed: this.options.seed,
      batch: this.options.batch,
      context: this.options.context,
      streamLength: this.tokens.length,
      epoch: this.epoch,
      index: this.index,
    }
  }

  next(): Batch {
    const { batch, context } = this.options
    const out = emptyBatch(batch, context)
    for (let row = 0; row < batch; row++) {
      fillRow(this.tokens, this.order[this.index]!, context, row, out, this.padId)
      if (++this.index === this.windowsPerEpoch) {
        this.epoch++
        this.index = 0
        this.order = this.orderFor(this.epoch)
      }
    }
    return out
  }

  private orderFor(epoch: number): Uint32Array {
    const order = new Uint32Array(this.windowsPerEpoch)
    for (let i = 0; i < order.length; i++) order[i] = i
    Rng.derive(this.options.seed, `data/epoch/${epoch}`).shuffle(order)
    return order
  }
}

export interface EvalOptions {
  readonly batch: number
  readonly context: number
  /** Stop after this many targets (default: the whole stream). */
  readonly maxTokens?: number
  readonly padId?: number
}

/**
 * Evaluation batches: windows in stream order, not shuffled, targets never overlapping, up to
 * `maxTokens` targets; rows and positions past the end are padding with mask 0. The same
 * stream and options always give the same batches.
 */
export function* evalBatches(tokens: TokenArray, options: EvalOptions): Generator<Batch> {
  const { batch, context } = options
  checkShape(batch, context, tokens.length)
  const limit = Math.min(options.maxTokens ?? Infinity, tokens.length - 1)
  const stream = tokens.subarray(0, limit + 1)
  const windows = windowCount(stream.length, context)
  const padId = options.padId ?? 0
  for (let w = 0; w < windows; w += batch) {
    const out = emptyBatch(batch, context)
    out.tokens.fill(padId)
    for (let row = 0; row < batch && w + row < windows; row++) fillRow(stream, w + row, context, row, out, padId)
    yield out
  }
}
