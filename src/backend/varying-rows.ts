import * as tf from "@tensorflow/tfjs"
import { NativeBackend } from "./native/backend.js"

/**
 * f(), telling the backend that the row counts of its tensors change from call to call, so
 * that it reuses buffers and matmul set-ups across counts (the native one does; see
 * NativeBackend.varyingRows). The same numbers either way on other backends.
 */
export const withVaryingRows = <T>(f: () => T): T => {
  const backend = tf.backend()
  return backend instanceof NativeBackend ? backend.varyingRows(f) : f()
}
