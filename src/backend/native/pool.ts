/**
 * Recycles the Float32Array outputs of native kernels once every tensor that referenced them
 * is disposed. Only arrays this pool allocated are ever recycled; an array that escaped to a
 * caller (dataSync/data) is never handed out again, so what a caller holds cannot change.
 * The free lists are bounded in bytes: past the bound, released arrays go to the GC.
 */
export class BufferPool {
  private readonly free = new Map<number, Float32Array[]>()
  private readonly owned = new WeakSet<ArrayBufferLike>()
  private readonly escaped = new WeakSet<ArrayBufferLike>()
  /** Live tensor entries per owned buffer (a stock slice may view the same buffer). */
  private readonly refs = new Map<ArrayBufferLike, number>()
  private freeBytes = 0
  private enabled = true
  private varying = false

  constructor(readonly capacityBytes: number) {}

  /** A Float32Array of `length` elements with unspecified contents. */
  take(length: number): Float32Array {
    const size = this.varying ? sizeClass(length) : length
    const reused = this.free.get(size)?.pop()
    if (reused) {
      this.freeBytes -= reused.byteLength
      return size === length ? reused : reused.subarray(0, length)
    }
    const fresh = new Float32Array(size)
    if (this.enabled) this.owned.add(fresh.buffer)
    return size === length ? fresh : fresh.subarray(0, length)
  }

  /**
   * While on, lengths round up to size classes (sixteenths of a power of two), so that work whose
   * row counts change from call to call reuses buffers instead of allocating each count anew
   * (a fresh array is zeroed and page-faulted, and its collection is the GC's). Off, lengths
   * are exact, as training's fixed shapes want.
   */
  setVarying(on: boolean): void {
    this.varying = on
  }

  /** Gives back an array taken but never stored in a tensor (a kernel that fell back). */
  giveBack(array: Float32Array): void {
    if (this.owned.has(array.buffer) && !this.refs.has(array.buffer)) this.recycle(array.buffer)
  }

  /** A tensor entry now references `values`. */
  retain(values: unknown): void {
    const buffer = bufferOf(values)
    if (buffer && this.owned.has(buffer)) this.refs.set(buffer, (this.refs.get(buffer) ?? 0) + 1)
  }

  /** A tensor entry that referenced `values` was deleted. */
  release(values: unknown): void {
    const buffer = bufferOf(values)
    if (!buffer || !this.owned.has(buffer)) return
    const n = (this.refs.get(buffer) ?? 1) - 1
    if (n > 0) {
      this.refs.set(buffer, n)
      return
    }
    this.refs.delete(buffer)
    this.recycle(buffer)
  }

  /** `values` was handed to a caller: its buffer must never be reused. */
  escape(values: unknown): void {
    const buffer = bufferOf(values)
    if (buffer && this.owned.has(buffer)) this.escaped.add(buffer)
  }

  /** Whether `values` is this pool's, never handed to a caller, and referenced by one tensor entry: a kernel may overwrite it. */
  exclusive(values: unknown): boolean {
    const buffer = bufferOf(values)
    return buffer !== undefined && this.owned.has(buffer) && !this.escaped.has(buffer) && this.refs.get(buffer) === 1
  }

  /** Bytes held in free lists, and how many recyclable buffers live tensors still use. */
  stats(): { freeBytes: number; liveBuffers: number } {
    return { freeBytes: this.freeBytes, liveBuffers: this.refs.size }
  }

  /** Turns recycling on or off; off also drops every free array. */
  setEnabled(on: boolean): void {
    this.enabled = on
    if (!on) {
      this.free.clear()
      this.freeBytes = 0
    }
  }

  private recycle(buffer: ArrayBufferLike): void {
    if (!this.enabled || this.escaped.has(buffer)) return
    if (this.freeBytes + buffer.byteLength > this.capacityBytes) return
    const array = new Float32Array(buffer)
    const list = this.free.get(array.length)
    if (list) list.push(array)
    else this.free.set(array.length, [array])
    this.freeBytes += buffer.byteLength
  }
}

/** length rounded up to a multiple of a sixteenth of its power of two (at most 6.25 % more); small lengths exact. */
export const sizeClass = (length: number): number => {
  if (length <= 4096) return length
  const step = 2 ** (Math.floor(Math.log2(length)) - 4)
  return Math.ceil(length / step) * step
}

const bufferOf = (values: unknown): ArrayBufferLike | undefined =>
  ArrayBuffer.isView(values) ? values.buffer : undefined
