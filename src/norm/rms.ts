import * as tf from "@tensorflow/tfjs"
import type { RmsNorm } from "../../dsl/kinds/norm/rms.js"
import { fusedNorm } from "../backend/fused.js"
import type { NormCompute } from "../model/kind.js"

export const rms: NormCompute<RmsNorm> = {
  apply: (p, x, spec) =>
    fusedNorm(x, p("gain"), spec.eps, false) ?? tf.tidy(() => tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), spec.eps))), p("gain"))),
}
