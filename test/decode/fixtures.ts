import * as tf from "@tensorflow/tfjs"
import type { NativeBackend } from "../../src/backend/native/backend.js"
import { initValues, type Model, type ParamValues } from "../../src/model/index.js"

/** Parameters well above the 0.02 init, so attention patterns, positions and exit confidences matter far above float32 noise. */
export const bigParams = (m: Model, seed: number): ParamValues => {
  const values = initValues(m.table, seed)
  return Object.fromEntries(m.table.map((p) => [p.name, tf.tensor(values.get(p.name)!.map((v) => v * 10 + (v === 0 ? 0.1 : 0)), [...p.decl.shape])]))
}

export const ids = (seed: number, n: number, vocab: number) => Array.from({ length: n }, (_, i) => (i * 7 + seed * 3 + ((i * i) % 5)) % vocab)

/** How many times the native program ran: proof that a comparison exercised it. */
export const programRuns = (): { readonly count: () => number; readonly restore: () => void } => {
  const addon = (tf.backend() as NativeBackend).addon
  const start = addon.decodeStart
  let n = 0
  addon.decodeStart = (...args) => {
    n++
    return start.apply(addon, args)
  }
  return { count: () => n, restore: () => void (addon.decodeStart = start) }
}

/** The largest difference of a from b, relative to 1 + b's largest magnitude. */
export const relativeDiff = (a: tf.Tensor, b: tf.Tensor): number =>
  tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]! / (1 + tf.max(tf.abs(b)).dataSync()[0]!))
