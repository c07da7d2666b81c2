import * as tf from "@tensorflow/tfjs"
import { Data, Effect } from "effect"
import { ensureNative, fallbackMessage, NATIVE_BACKEND } from "./native/index.js"

/**
 * The one place that decides which TensorFlow.js backend runs the math.
 * Preference: tfjs-node-gpu, tfjs-node (both optional packages that may be absent), then
 * `native` (the cpu backend with its hot kernels in native code, see src/backend/native/),
 * then stock tfjs (`cpu`). A run records the name returned here.
 */
export interface BackendChoice {
  readonly name: string
  readonly detail: string
}

const tryImport = async (pkg: string): Promise<boolean> => {
  try {
    await import(pkg)
    return true
  } catch {
    return false
  }
}

/** The backends `prefer` may name: `tensorflow` needs @tensorflow/tfjs-node (or -gpu) installed. */
export const backendNames = [NATIVE_BACKEND, "cpu", "tensorflow"] as const

let chosen: BackendChoice | undefined
let fallbackSaid = false

/** Registers `native` when the addon loads; otherwise says once what to install. */
const nativeAvailable = (): { ok: true; detail: string } | { ok: false; message: string } => {
  const status = ensureNative()
  if (status.available) return { ok: true, detail: status.detail }
  const message = fallbackMessage(status.reason)
  if (!fallbackSaid) {
    fallbackSaid = true
    console.warn(message)
  }
  return { ok: false, message }
}

/** Selects and initialises the backend once per process; `prefer` forces a named backend. */
export const selectBackend = async (prefer?: string): Promise<BackendChoice> => {
  if (chosen && (prefer === undefined || prefer === chosen.name)) return chosen
  if (prefer !== undefined) {
    let detail = `requested ${prefer}`
    if (prefer === NATIVE_BACKEND) {
      const native = nativeAvailable()
      if (!native.ok) throw new Error(native.message)
      detail = native.detail
    }
    if (!(await tf.setBackend(prefer))) throw new Error(`backend "${prefer}" is not available`)
    await tf.ready()
    chosen = { name: prefer, detail }
    return chosen
  }
  for (const [pkg, name] of [
    ["@tensorflow/tfjs-node-gpu", "tensorflow"],
    ["@tensorflow/tfjs-node", "tensorflow"],
  ] as const) {
    if ((await tryImport(pkg)) && (await tf.setBackend(name))) {
      await tf.ready()
      chosen = { name, detail: pkg }
      return chosen
    }
  }
  const native = nativeAvailable()
  if (native.ok && (await tf.setBackend(NATIVE_BACKEND))) {
    await tf.ready()
    chosen = { name: NATIVE_BACKEND, detail: native.detail }
    return chosen
  }
  await tf.setBackend("cpu")
  await tf.ready()
  chosen = { name: "cpu", detail: native.ok ? "stock tfjs cpu backend" : `stock tfjs cpu backend: ${native.message}` }
  return chosen
}

export class BackendError extends Data.TaggedError("BackendError")<{ readonly problem: string }> {
  override get message(): string {
    return this.problem
  }
}

/** `selectBackend` for the commands: an unavailable backend is a typed error, not a crash. */
export const chooseBackend = (prefer?: string): Effect.Effect<BackendChoice, BackendError> =>
  Effect.tryPromise({ try: () => selectBackend(prefer), catch: (e) => new BackendError({ problem: e instanceof Error ? e.message : String(e) }) })
