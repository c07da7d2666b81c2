/**
 * The Newton–Schulz orthogonalisation Muon applies to a matrix's update (Keller Jordan,
 * github.com/KellerJordan/Muon, muon.py `zeropower_via_newtonschulz5`): with G = U·S·Vᵀ, each
 * step X ← a·X + (b·A + c·A²)·X, A = X·Xᵀ, maps every singular value s to a·s + b·s³ + c·s⁵
 * and keeps U and V. Starting from G/‖G‖_F (singular values in (0, 1]) the quintic
 * coefficients push them to roughly [0.7, 1.2] in 5 steps rather than to exactly 1: an
 * approximate U·Vᵀ, which the reference finds trains as well. The classic cubic iteration
 * (1.5, −0.5, 0) converges to U·Vᵀ itself, slowly.
 */
import * as tf from "@tensorflow/tfjs"
import { fusedNewtonSchulz } from "../backend/fused.js"

export type Coefficients = readonly [a: number, b: number, c: number]

/** The reference's quintic coefficients, chosen to maximise the slope at zero. */
export const quintic: Coefficients = [3.4445, -4.775, 2.0315]

/** The iteration in tfjs ops. A tall matrix is transposed first, so X·Xᵀ is the smaller Gram matrix. */
const composedNewtonSchulz = (g: tf.Tensor2D, steps: number, [a, b, c]: Coefficients): tf.Tensor2D =>
  tf.tidy(() => {
    const tall = g.shape[0] > g.shape[1]
    const start = tall ? g.transpose() : g
    let x: tf.Tensor2D = start.div(tf.norm(start).add(1e-7))
    for (let i = 0; i < steps; i++) {
      const gram = tf.matMul(x, x, false, true)
      const poly = gram.mul(b).add(tf.matMul(gram, gram).mul(c))
      x = x.mul(a).add(tf.matMul(poly, x))
    }
    return tall ? x.transpose() : x
  })

/**
 * `steps` iterations on `g` normalised by its Frobenius norm (+1e-7, as the reference), in
 * float32, by the backend's fused kernel where it has one (src/backend/fused.ts).
 */
export const newtonSchulz = (g: tf.Tensor2D, steps: number, coefficients: Coefficients = quintic): tf.Tensor2D =>
  fusedNewtonSchulz(g, steps, coefficients) ?? composedNewtonSchulz(g, steps, coefficients)
