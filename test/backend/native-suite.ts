import { describe } from "vitest"
import { ensureNative } from "../../src/backend/native/index.js"

/**
 * Suites that need the native addon. CI installs oneDNN and builds it, so there a missing
 * addon fails these suites with the reason; elsewhere (no oneDNN, another CPU) they are
 * skipped and test/backend/select.test.ts checks the fallback instead.
 */
export const nativeStatus = ensureNative()
export const describeNative = describe.skipIf(!nativeStatus.available && !process.env["CI"])
