import * as tf from "@tensorflow/tfjs"
import { expect, it } from "vitest"
import { FUSED_ACTIVATION } from "../../src/backend/fused.js"
import { ensureNative } from "../../src/backend/native/index.js"

// No other import here sets a backend up: each test file runs in its own process, so the
// gradient registry holds only what these imports and this test register.
it("importing the fused ops registers no gradient; the backend with the kernel registers it on setup", () => {
  expect(tf.getGradient(FUSED_ACTIVATION)).toBeUndefined()
  const status = ensureNative()
  expect(tf.getGradient(FUSED_ACTIVATION) !== undefined).toBe(status.available)
  expect(tf.getKernel(FUSED_ACTIVATION, "native") !== undefined).toBe(status.available)
})
