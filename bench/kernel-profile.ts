import * as tf from "@tensorflow/tfjs"

/** Per tfjs kernel: calls and milliseconds spent inside it (its native code or stock fallback). */
export interface KernelTime {
  readonly kernel: string
  readonly calls: number
  readonly ms: number
}

/** Matmuls split by shape (their cost depends on it most): `BatchMatMul [a]x[b] T/N`. */
const keyOf = (kernel: string, args: Parameters<tf.KernelFunc>[0]): string => {
  if (kernel !== "BatchMatMul" && kernel !== "_FusedMatMul") return kernel
  const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo }
  const t = (flag: unknown) => (flag === true ? "T" : "N")
  return `${kernel} [${a.shape.join(",")}]${t(args.attrs?.transposeA)} x [${b.shape.join(",")}]${t(args.attrs?.transposeB)}`
}

/**
 * Wraps every kernel registered for `backend` with a timer, so a step's time splits by kernel
 * (the forward ops and, through their gradients, the backward ones). A kernel that runs
 * another through the engine is charged for it (only the outermost call counts), so nothing is
 * counted twice; what the kernels do not account for is the engine's own work (the tape,
 * bookkeeping, disposal). Returns a reader of the totals since the last reset.
 */
export const profileKernels = (backend: string) => {
  const totals = new Map<string, { calls: number; ns: bigint }>()
  let depth = 0
  for (const config of tf.getKernelsForBackend(backend)) {
    const inner = config.kernelFunc
    tf.unregisterKernel(config.kernelName, backend)
    tf.registerKernel({
      ...config,
      kernelFunc: ((args: Parameters<tf.KernelFunc>[0]) => {
        const start = process.hrtime.bigint()
        depth++
        try {
          return inner(args)
        } finally {
          depth--
          if (depth === 0) {
            const key = keyOf(config.kernelName, args)
            const t = totals.get(key) ?? { calls: 0, ns: 0n }
            t.calls++
            t.ns += process.hrtime.bigint() - start
            totals.set(key, t)
          }
        }
      }) as tf.KernelFunc,
    })
  }
  return {
    reset: () => totals.clear(),
    read: (): KernelTime[] =>
      [...totals.entries()].map(([kernel, t]) => ({ kernel, calls: t.calls, ms: Number(t.ns) / 1e6 })).sort((a, b) => b.ms - a.ms),
  }
}
