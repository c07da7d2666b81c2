import * as tf from "@tensorflow/tfjs"
import { MathBackendCPU } from "@tensorflow/tfjs-backend-cpu"
import type { NativeAddon } from "./addon.js"
import { NativeBackend, type NativeOptions } from "./backend.js"
import type { Fallback, NativeKernelEntry } from "./kernel.js"
import { fusedGradients, fusedKernels } from "./kernels/fused.js"
import { binaryKernels } from "./kernels/binary.js"
import { compareKernels } from "./kernels/compare.js"
import { cumsumKernels } from "./kernels/cumsum.js"
import { indexingKernels } from "./kernels/indexing.js"
import { matmulKernels } from "./kernels/matmul.js"
import { padKernels } from "./kernels/pad.js"
import { reduceKernels } from "./kernels/reduce.js"
import { sliceKernels } from "./kernels/slice.js"
import { tileKernels } from "./kernels/tile.js"
import { softmaxKernels } from "./kernels/softmax.js"
import { transposeKernels } from "./kernels/transpose.js"
import { unaryKernels } from "./kernels/unary.js"

export const NATIVE_BACKEND = "native"

const OVERRIDES: readonly NativeKernelEntry[] = [
  ...matmulKernels,
  ...binaryKernels,
  ...compareKernels,
  ...unaryKernels,
  ...reduceKernels,
  ...cumsumKernels,
  ...softmaxKernels,
  ...transposeKernels,
  ...padKernels,
  ...sliceKernels,
  ...tileKernels,
  ...indexingKernels,
]

/** Stock kernel names the native backend runs in native code (the rest are the stock cpu kernels). */
export const nativeKernelNames = (): string[] => OVERRIDES.map((k) => k.kernelName)

/** Kernels only the native backend has. */
export const fusedKernelNames = (): string[] => fusedKernels.map((k) => k.kernelName)

/**
 * Options from the environment: TFJS_NATIVE_BF16=1 (bf16 matmuls where the CPU has bf16
 * hardware), =rounded (bf16 numerics on fp32 kernels) or =auto (fp32 until a run chooses bf16
 * for the shapes measured faster: src/backend/native/auto-precision.ts), TFJS_NATIVE_REUSE=0,
 * TFJS_NATIVE_POOL_MB (default 3072: one training step of config R keeps about 0.4 GB of
 * outputs in flight), TFJS_NATIVE_THREADS.
 */
export const optionsFromEnv = (env: NodeJS.ProcessEnv = process.env, bf16Native = false): NativeOptions => ({
  precision: env.TFJS_NATIVE_BF16 === "rounded" ? "bf16-rounded" : env.TFJS_NATIVE_BF16 === "1" && bf16Native ? "bf16" : "fp32",
  reuse: env.TFJS_NATIVE_REUSE !== "0",
  poolBytes: Number(env.TFJS_NATIVE_POOL_MB ?? 3072) * 2 ** 20,
  threads: env.TFJS_NATIVE_THREADS === undefined ? undefined : Math.max(1, Number(env.TFJS_NATIVE_THREADS)),
})

/**
 * Registers the `native` backend: every stock cpu kernel, with the hot ones replaced by
 * native code that falls back to the stock kernel for inputs it does not cover, and the
 * fused kernels with their gradients. Once per process (the guard below), so no gradient is
 * registered twice (tfjs replaces it, warning only in debug mode).
 */
export const registerNative = (addon: NativeAddon, options: NativeOptions): void => {
  if (tf.findBackendFactory(NATIVE_BACKEND) !== null) return
  const cpu = tf.findBackend("cpu")
  // The subclass must extend the very class the umbrella package registered as "cpu".
  if (!(cpu instanceof MathBackendCPU)) throw new Error("@tensorflow/tfjs-backend-cpu is not the instance @tensorflow/tfjs uses")
  tf.registerBackend(NATIVE_BACKEND, () => new NativeBackend(addon, options), 0)
  const stock = new Map<string, tf.KernelConfig>()
  for (const config of tf.getKernelsForBackend("cpu")) stock.set(config.kernelName, config)
  const overridden = new Set(OVERRIDES.map((k) => k.kernelName))
  for (const config of stock.values())
    if (!overridden.has(config.kernelName)) tf.registerKernel({ ...config, backendName: NATIVE_BACKEND })
  for (const { kernelName, kernel } of OVERRIDES) {
    const base = stock.get(kernelName)
    if (!base) throw new Error(`stock cpu backend has no ${kernelName} kernel`)
    const fallback = base.kernelFunc as unknown as Fallback
    tf.registerKernel({
      kernelName,
      backendName: NATIVE_BACKEND,
      kernelFunc: ((args: Parameters<Fallback>[0]) => kernel(args, fallback)) as unknown as tf.KernelFunc,
    })
  }
  for (const { kernelName, kernelFunc } of fusedKernels)
    tf.registerKernel({ kernelName, backendName: NATIVE_BACKEND, kernelFunc: kernelFunc as unknown as tf.KernelFunc })
  for (const config of fusedGradients) tf.registerGradient(config)
}
