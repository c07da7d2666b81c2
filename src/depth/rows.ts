import * as tf from "@tensorflow/tfjs"

/**
 * Moving some positions' rows in and out of a [N, D] tensor with gathers only, so gradients
 * flow (a gather's gradient is a scatter-add) and every row is an exact copy.
 */
const indices = (values: ArrayLike<number>): tf.Tensor1D => tf.tensor1d(Int32Array.from(values), "int32")

/** Rows `rows` of x, in that order. */
export const rowsOf = (x: tf.Tensor2D, rows: ReadonlyArray<number>): tf.Tensor2D => tf.gather(x, indices(rows))

/** x with row rows[k] replaced by row k of `values`. */
export const withRows = (x: tf.Tensor2D, rows: ReadonlyArray<number>, values: tf.Tensor2D): tf.Tensor2D => {
  const n = x.shape[0]
  const index = Int32Array.from({ length: n }, (_, r) => r)
  rows.forEach((r, k) => (index[r] = n + k))
  return tf.gather(tf.concat([x, values]), indices(index))
}

/** n rows, row rows[k] being row k of `values` and the others zero. */
export const placeRows = (values: tf.Tensor2D, rows: ReadonlyArray<number>, n: number): tf.Tensor2D => {
  const zero = values.shape[0]
  const index = new Int32Array(n).fill(zero)
  rows.forEach((r, k) => (index[r] = k))
  return tf.gather(tf.concat([values, tf.zeros([1, values.shape[1]])]), indices(index)) as tf.Tensor2D
}

/** Chunks of rows (each with the positions it holds) put back in position order: [N, V]. */
export const assemble = (chunks: ReadonlyArray<{ readonly rows: ReadonlyArray<number>; readonly values: tf.Tensor2D }>, n: number): tf.Tensor2D => {
  const index = new Int32Array(n)
  let k = 0
  for (const c of chunks) for (const r of c.rows) index[r] = k++
  return tf.gather(tf.concat(chunks.map((c) => c.values)), indices(index))
}
