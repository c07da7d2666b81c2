/**
 * A small seeded random generator (xoshiro128**, seeded through splitmix32) whose whole
 * state is four uint32 words, so it serialises into a checkpoint and restores exactly.
 * Every random choice in the project goes through one of these; never Math.random().
 */
export type RngState = readonly [number, number, number, number]

const splitmix32 = (seed: number): (() => number) => {
  let s = seed >>> 0
  return () => {
    s = (s + 0x9e3779b9) >>> 0
    let z = s
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0
    return (z ^ (z >>> 16)) >>> 0
  }
}

/** FNV-1a of a label, so `Rng.derive(seed, "init")` streams are independent and stable. */
const hashLabel = (label: string): number => {
  let h = 0x811c9dc5
  for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 0x01000193) >>> 0
  return h >>> 0
}

const rotl = (x: number, k: number): number => ((x << k) | (x >>> (32 - k))) >>> 0

export class Rng {
  private s0: number
  private s1: number
  private s2: number
  private s3: number

  private constructor(state: RngState) {
    ;[this.s0, this.s1, this.s2, this.s3] = state
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s3 = 1
  }

  static fromSeed(seed: number): Rng {
    if (!Number.isInteger(seed)) throw new Error(`seed must be an integer, got ${seed}`)
    const next = splitmix32(seed ^ Math.floor(seed / 2 ** 32))
    return new Rng([next(), next(), next(), next()])
  }

  /** An independent stream for one purpose (e.g. "init", "data", "sample") of a seed. */
  static derive(seed: number, label: string): Rng {
    return Rng.fromSeed((seed ^ hashLabel(label)) >>> 0)
  }

  static fromState(state: RngState): Rng {
    if (state.length !== 4 || !state.every((w) => Number.isInteger(w) && w >= 0 && w < 2 ** 32)) {
      throw new Error(`invalid RNG state ${JSON.stringify(state)}: expected four uint32 words`)
    }
    return new Rng(state)
  }

  state(): RngState {
    return [this.s0, this.s1, this.s2, this.s3]
  }

  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0
    const t = (this.s1 << 9) >>> 0
    this.s2 = (this.s2 ^ this.s0) >>> 0
    this.s3 = (this.s3 ^ this.s1) >>> 0
    this.s1 = (this.s1 ^ this.s2) >>> 0
    this.s0 = (this.s0 ^ this.s3) >>> 0
    this.s2 = (this.s2 ^ t) >>> 0
    this.s3 = rotl(this.s3, 11)
    return result
  }

  /** Uniform in [0, 1) with 32 bits of resolution. */
  nextFloat(): number {
    return this.nextUint32() / 2 ** 32
  }

  /** Uniform integer in [0, n), without modulo bias. */
  nextInt(n: number): number {
    if (!Number.isInteger(n) || n <= 0 || n > 2 ** 32) throw new Error(`nextInt: bad bound ${n}`)
    const limit = 2 ** 32 - (2 ** 32 % n)
    for (;;) {
      const x = this.nextUint32()
      if (x < limit) return x % n
    }
  }

  /** Standard normal sample (Box–Muller). */
  nextNormal(): number {
    const u1 = 1 - this.nextFloat()
    const u2 = this.nextFloat()
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2)
  }

  /** Fisher–Yates shuffle in place. */
  shuffle<T>(xs: T[] | Uint32Array | Int32Array): void {
    for (let i = xs.length - 1; i > 0; i--) {
      const j = this.nextInt(i + 1)
      const tmp = xs[i]!
      xs[i] = xs[j]!
      xs[j] = tmp
    }
  }
}
