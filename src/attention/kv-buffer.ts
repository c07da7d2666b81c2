import * as tf from "@tensorflow/tfjs"

/**
 * The keys or the values of one attention layer while decoding: [batch, capacity, heads, dim]
 * float32, allocated once for the context and written in place as tokens arrive, so a step
 * appends its own positions instead of copying the whole sequence. Position-major, so that
 * native decoding reads a layer's cache as one sequential stream, every head's key of a
 * position together. Both decode paths use it: the native one writes into `data` directly,
 * tfjs kinds through `append` and `tensor`.
 */
export class KvBuffer {
  data: Float32Array
  capacity: number
  length = 0

  constructor(
    readonly batch: number,
    readonly heads: number,
    readonly dim: number,
    capacity: number,
  ) {
    this.capacity = capacity
    this.data = new Float32Array(batch * capacity * heads * dim)
  }

  /** Makes room for n more positions; past the capacity it doubles, keeping what is held. */
  reserve(n: number): void {
    const need = this.length + n
    if (need <= this.capacity) return
    const capacity = Math.max(need, 2 * this.capacity)
    const row = this.heads * this.dim
    const data = new Float32Array(this.batch * capacity * row)
    for (let b = 0; b < this.batch; b++) data.set(this.data.subarray(b * this.capacity * row, (b * this.capacity + this.length) * row), b * capacity * row)
    this.data = data
    this.capacity = capacity
  }

  /** Appends x [batch, heads, t, dim]. */
  append(x: tf.Tensor4D): void {
    const [b, h, t, d] = x.shape
    if (b !== this.batch || h !== this.heads || d !== this.dim)
      throw new Error(`decoding cache: holds [${this.batch}, ${this.heads}, ·, ${this.dim}], got [${b}, ${h}, ${t}, ${d}]`)
    this.reserve(t)
    const values = x.dataSync() as Float32Array
    for (let s = 0; s < b; s++)
      for (let g = 0; g < h; g++)
        for (let i = 0; i < t; i++) this.data.set(values.subarray(((s * h + g) * t + i) * d, ((s * h + g) * t + i + 1) * d), ((s * this.capacity + this.length + i) * h + g) * d)
    this.length += t
  }

  /** The positions held, as attention kinds take them: [batch, heads, length, dim]. */
  tensor(): tf.Tensor4D {
    const { batch, heads, dim, length } = this
    return tf.tidy(() => {
      const held =
        batch === 1
          ? tf.tensor4d(this.data.subarray(0, length * heads * dim), [1, length, heads, dim])
          : tf.slice(tf.tensor4d(this.data, [batch, this.capacity, heads, dim]), [0, 0, 0, 0], [batch, length, heads, dim])
      return tf.transpose(held, [0, 2, 1, 3])
    })
  }
}
