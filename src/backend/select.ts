import * as tf from "@tensorflow/tfjs"

/**
 * The one place that decides which TensorFlow.js backend runs the math.
 * Preference: tfjs-node-gpu, tfjs-node (both optional packages that may be absent),
 * then stock tfjs (`cpu`). A run records the name returned here.
 */
export type BackendName = "tensorflow-gpu" | "tensorflow" | "cpu" | "wasm"

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

let chosen: BackendChoice | undefined

/** Selects and initialises the backend once per process; `prefer` forces a named backend. */
export const selectBackend = async (prefer?: string): Promise<BackendChoice> => {
  if (chosen && (prefer === undefined || prefer === chosen.name)) return chosen
  if (prefer !== undefined) {
    if (!(await tf.setBackend(prefer))) throw new Error(`backend "${prefer}" is not available`)
    await tf.ready()
    chosen = { name: prefer, detail: `requested ${prefer}` }
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
  await tf.setBackend("cpu")
  await tf.ready()
  chosen = { name: "cpu", detail: "stock tfjs cpu backend" }
  return chosen
}
