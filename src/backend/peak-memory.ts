import * as tf from "@tensorflow/tfjs"
import { NativeBackend } from "./native/backend.js"

/**
 * The most tensor memory held at once above what was held at `start`, counting each buffer
 * once (a reshape shares its input's buffer). Only the native backend tracks this; on other
 * backends the meter is undefined.
 */
export interface PeakMeter {
  readonly start: () => void
  readonly peakAbove: () => number
}

export const peakMeter = (): PeakMeter | undefined => {
  const backend = tf.backend()
  if (!(backend instanceof NativeBackend)) return undefined
  let base = 0
  return {
    start: () => {
      base = backend.storedBytes()
      backend.resetPeak()
    },
    peakAbove: () => backend.peakBytes() - base,
  }
}
