import * as tf from "@tensorflow/tfjs"
import { Schema } from "effect"
import type { PosencKind } from "../model/kind.js"

/** A learned absolute position table added to the token embeddings (GPT-2). */
const schema = Schema.Struct({ op: Schema.Literal("posenc"), kind: Schema.Literal("learned") })

export const learned: PosencKind<typeof schema.Type> & { make: () => typeof schema.Type } = {
  schema,
  make: () => ({ op: "posenc", kind: "learned" }),
  params: (_spec, dims) => ({
    table: { shape: [dims.context, dims.width], init: { kind: "normal", std: 0.02 }, decay: false, embedding: true },
  }),
  flops: () => 0,
  label: () => "learned",
  maxLength: (_spec, dims) => dims.context,
  embed: (p, x, _spec, offset) => {
    const [, t, d] = x.shape
    return tf.add(x, tf.slice(p("table"), [offset, 0], [t, d])) as tf.Tensor3D
  },
}
