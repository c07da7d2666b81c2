import * as tf from "@tensorflow/tfjs"
import { Schema } from "effect"
import type { ActivationKind } from "../model/kind.js"

const schema = Schema.Struct({ kind: Schema.Literal("relu") })

export const relu: ActivationKind<typeof schema.Type> & { make: () => typeof schema.Type } = {
  schema,
  make: () => ({ kind: "relu" }),
  label: () => "relu",
  gated: false,
  apply: (_spec, x) => tf.relu(x),
}
