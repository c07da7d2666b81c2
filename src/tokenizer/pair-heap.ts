/**
 * Max-heap of (count, pair key) for BPE training. Order: higher count first, then the
 * smaller key (i.e. smaller left id, then smaller right id), so ties break deterministically.
 */
export class PairHeap {
  private counts: number[] = []
  private keys: number[] = []

  get size(): number {
    return this.keys.length
  }

  push(count: number, key: number): void {
    this.counts.push(count)
    this.keys.push(key)
    this.up(this.keys.length - 1)
  }

  /** The top entry's count and key; call only when size > 0. */
  peekCount(): number {
    return this.counts[0]!
  }

  peekKey(): number {
    return this.keys[0]!
  }

  pop(): void {
    const lastCount = this.counts.pop()!
    const lastKey = this.keys.pop()!
    if (this.keys.length > 0) {
      this.counts[0] = lastCount
      this.keys[0] = lastKey
      this.down(0)
    }
  }

  private before(i: number, j: number): boolean {
    const ci = this.counts[i]!
    const cj = this.counts[j]!
    return ci > cj || (ci === cj && this.keys[i]! < this.keys[j]!)
  }

  private swap(i: number, j: number): void {
    const c = this.counts[i]!
    this.counts[i] = this.counts[j]!
    this.counts[j] = c
    const k = this.keys[i]!
    this.keys[i] = this.keys[j]!
    this.keys[j] = k
  }

  private up(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!this.before(i, parent)) return
      this.swap(i, parent)
      i = parent
    }
  }

  private down(i: number): void {
    const n = this.keys.length
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let top = i
      if (l < n && this.before(l, top)) top = l
      if (r < n && this.before(r, top)) top = r
      if (top === i) return
      this.swap(i, top)
      i = top
    }
  }
}
