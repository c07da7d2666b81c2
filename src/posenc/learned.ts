import * as tf from "@tensorflow/tfjs"
import type { Learned } from "../../dsl/kinds/posenc/learned.js"
import type { PosencCompute } from "../model/kind.js"

/** The learned table's rows for positions offset.., added to the token embeddings. */
export const learned: PosencCompute<Learned> = {
  embed: (p, x, _spec, offset) => {
    const [, t, d] = x.shape
    return tf.add(x, tf.slice(p("table"), [offset, 0], [t, d])) as tf.Tensor3D
  },
}
