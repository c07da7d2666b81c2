import * as tf from "@tensorflow/tfjs"
import type { Params } from "../model/init.js"
import type { TensorArrays } from "../train/checkpoint.js"
import type { WeightMasks } from "../train/start.js"
import type { PrunedMasks } from "./compute/compute.js"

/**
 * The masks of an unstructured pruned run during its fine-tune: after every optimiser step
 * the masked weights are set back to exactly +0 (the update moved them), and gradual
 * pruning's masks are recomputed at its schedule's steps. They live in the checkpoint, so a
 * resume continues with the same ones.
 */
export interface MaskKeeper extends WeightMasks {
  readonly dispose: () => void
}

const toTensors = (masks: TensorArrays): Map<string, tf.Tensor> =>
  new Map(Object.entries(masks).map(([name, m]) => [name, tf.tidy(() => tf.cast(tf.tensor(m.data, [...m.shape], "float32"), "bool"))]))

const copyOf = (t: tf.Tensor): { shape: readonly number[]; data: Float32Array } => ({ shape: t.shape, data: Float32Array.from(t.dataSync() as ArrayLike<number>) })

export const maskKeeper = (masks: PrunedMasks): MaskKeeper => {
  let current = toTensors(masks.initial)
  const replace = (next: TensorArrays) => {
    tf.dispose([...current.values()])
    current = toTensors(next)
  }
  return {
    apply: (params: Params, step: number) => {
      const next = masks.remask?.(step, () => Object.fromEntries([...current.keys()].map((name) => [name, copyOf(params[name]!)])))
      if (next !== undefined) replace(next)
      tf.tidy(() => {
        for (const [name, keep] of current) params[name]!.assign(tf.where(keep, params[name]!, tf.zerosLike(params[name]!)))
      })
    },
    save: () => Object.fromEntries([...current].map(([name, m]) => [name, copyOf(m)])),
    restore: (saved) => {
      for (const [name, m] of current) {
        const s = saved[name]
        if (s === undefined || s.shape.join(",") !== m.shape.join(",")) return `masks.safetensors lacks "${name}" [${m.shape}] or has another shape`
      }
      const extra = Object.keys(saved).filter((name) => !current.has(name))
      if (extra.length > 0) return `masks.safetensors has masks for weights this run does not prune: ${extra.slice(0, 3).join(", ")}`
      replace(saved)
      return undefined
    },
    dispose: () => tf.dispose([...current.values()]),
  }
}
