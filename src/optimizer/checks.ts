import * as tf from "@tensorflow/tfjs"

/** A rate or coefficient of optimiser `who` in [lo, hiExclusive), else one message naming it. */
export const checkUnit = (who: string, name: string, x: number, lo = 0, hiExclusive = 1): void => {
  if (!(Number.isFinite(x) && x >= lo && x < hiExclusive)) throw new Error(`${who}: ${name} must be in [${lo}, ${hiExclusive}), got ${x}`)
}

/** What every optimiser's update refuses before touching a weight: a bad rate, a gradient of no parameter or of another shape. */
export const checkUpdate = (who: string, params: Readonly<Record<string, tf.Variable>>, grads: Readonly<Record<string, tf.Tensor>>, lr: number): void => {
  if (!(Number.isFinite(lr) && lr >= 0)) throw new Error(`${who}: learning rate must be finite and >= 0, got ${lr}`)
  for (const [name, g] of Object.entries(grads)) {
    const p = params[name]
    if (p === undefined) throw new Error(`${who}: gradient for unknown parameter "${name}"`)
    if (!tf.util.arraysEqual(g.shape, p.shape)) throw new Error(`${who}: gradient for "${name}" has shape [${g.shape}], parameter has [${p.shape}]`)
  }
}
