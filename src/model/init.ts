import * as tf from "@tensorflow/tfjs"
import type { NamedParam } from "../../dsl/params.js"
import { Rng } from "../random/rng.js"
import type { Init } from "../../dsl/kind.js"

/** Fills one parameter's values from its initialiser. */
const fill = (init: Init, n: number, rng: Rng): Float32Array => {
  const out = new Float32Array(n)
  switch (init.kind) {
    case "zeros":
      return out
    case "ones":
      return out.fill(1)
    case "normal":
      for (let i = 0; i < n; i++) out[i] = init.std * rng.nextNormal()
      return out
  }
}

/**
 * Initial parameter values from a seed. Values come from the project's own generator in
 * table order, not from tfjs's random ops, so they are byte-identical on every backend.
 */
export const initValues = (table: ReadonlyArray<NamedParam>, seed: number): Map<string, Float32Array> => {
  const rng = Rng.derive(seed, "init")
  return new Map(table.map((p) => [p.name, fill(p.decl.init, p.decl.shape.reduce((a, b) => a * b, 1), rng)]))
}

export type Params = Readonly<Record<string, tf.Variable>>

export const initParams = (table: ReadonlyArray<NamedParam>, seed: number): Params => {
  const values = initValues(table, seed)
  // Variable names are global in tfjs, so variables stay anonymous; the record's keys name them.
  return Object.fromEntries(
    table.map((p) => [p.name, tf.tidy(() => tf.variable(tf.tensor(values.get(p.name)!, [...p.decl.shape], "float32")))]),
  )
}
