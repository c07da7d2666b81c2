import * as tf from "@tensorflow/tfjs"

const size = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1)

/**
 * FLOPs of the matrix products `f` runs, 2 per multiply-add, read off the kernels tf.profile
 * records (a reference for what a part says it spends): a product with output [.., m, n] and
 * first input of |a| = batch·m·k elements does |a|·n multiply-adds, transposed or not.
 */
export const matmulFlops = async (f: () => void): Promise<number> => {
  const info = await tf.profile(() => {
    f()
  })
  return info.kernels.filter((k) => /MatMul/.test(k.name)).reduce((sum, k) => sum + 2 * size(k.inputShapes[0]!) * k.outputShapes[0]!.at(-1)!, 0)
}
