import { INSTALL_HINT, loadAddon } from "./addon.js"
import { optionsFromEnv, registerNative } from "./register.js"

export { fusedKernelNames, NATIVE_BACKEND, nativeKernelNames } from "./register.js"
export { INSTALL_HINT } from "./addon.js"
export type { MatmulPrecision, NativeBackend } from "./backend.js"

export type NativeStatus =
  | { readonly available: true; readonly detail: string }
  | { readonly available: false; readonly reason: string }

let status: NativeStatus | undefined

/**
 * Loads the addon and registers the `native` backend, once per process (options come from
 * the environment at that moment). Unavailable is a value: the caller decides what to fall
 * back to and how to say so.
 */
export const ensureNative = (): NativeStatus => {
  status ??= register()
  return status
}

const register = (): NativeStatus => {
  const load = loadAddon()
  if (!load.ok) return { available: false, reason: load.reason }
  const options = optionsFromEnv(process.env, load.addon.info().bf16Native)
  registerNative(load.addon, options)
  if (options.threads !== undefined) load.addon.setThreads(options.threads)
  const info = load.addon.info()
  if (process.env.TFJS_NATIVE_BF16 === "1" && options.precision !== "bf16")
    warnOnce(`TFJS_NATIVE_BF16=1: this CPU (${info.isa}) has no bf16 hardware (avx512_bf16/AMX); matmuls stay fp32`)
  return {
    available: true,
    detail: `native kernels (oneDNN, ${info.isa}, ${info.threads} threads, ${process.env.TFJS_NATIVE_BF16 === "auto" ? "TFJS_NATIVE_BF16=auto" : options.precision} matmuls)`,
  }
}

const warned = new Set<string>()
const warnOnce = (message: string): void => {
  if (warned.has(message)) return
  warned.add(message)
  console.warn(message)
}

/** Says why the fast path is missing and what to install for it. */
export const fallbackMessage = (reason: string): string =>
  `tfjs native kernels unavailable (${reason}); running on stock tfjs cpu, which is far slower. ` +
  `For the fast path run: ${INSTALL_HINT}`
