import type * as tf from "@tensorflow/tfjs"
import { MathBackendCPU } from "@tensorflow/tfjs-backend-cpu"
import type { NativeAddon } from "./addon.js"
import { BufferPool } from "./pool.js"

type DataId = object
type BackendValues = Parameters<MathBackendCPU["write"]>[0]

/**
 * Matmul inputs: fp32; bf16 on oneDNN's bf16 kernels (fp32 accumulation and outputs, fp32
 * weights kept by the caller); or fp32 kernels on inputs rounded to bf16, the same numerics
 * on CPUs without bf16 hardware (to check a bf16 loss curve anywhere, not for speed).
 */
export type MatmulPrecision = "fp32" | "bf16" | "bf16-rounded"

export const PRECISION_CODE: Readonly<Record<MatmulPrecision, number>> = { fp32: 0, bf16: 1, "bf16-rounded": 2 }

export interface NativeOptions {
  /** Recycle output buffers of disposed tensors. */
  readonly reuse: boolean
  readonly precision: MatmulPrecision
  /** Bound on the bytes the buffer pool keeps free. */
  readonly poolBytes: number
  /** Kernel threads; undefined keeps one per physical core (or OMP_NUM_THREADS). */
  readonly threads: number | undefined
}

/**
 * The stock `cpu` backend with the same tensor storage (plain typed arrays) plus the addon
 * and a buffer pool. Every entry stored or deleted passes through write/move/disposeData, so
 * the pool sees exactly which buffers live tensors still reference.
 */
export class NativeBackend extends MathBackendCPU {
  readonly pool: BufferPool
  precision: MatmulPrecision
  /** Products that run in bf16 whatever `precision` says, by shapeKey (TFJS_NATIVE_BF16=auto's measured choice). */
  bf16Shapes: ReadonlySet<string> = new Set()
  /**
   * Bytes of tensor data stored now and the most stored since resetPeak. Unlike
   * tf.memory().numBytes, which counts every reshape of one buffer again, each buffer counts
   * once, however many entries view it (a stock slice, a kernel's output written in place).
   */
  private liveBytes = 0
  private highBytes = 0
  private readonly views = new Map<ArrayBufferLike, { entries: number; bytes: number }>()
  /** Inside varyingRows. */
  private varying = false

  constructor(
    readonly addon: NativeAddon,
    options: NativeOptions,
  ) {
    super()
    // The stock backend's first write prints an advert for tfjs-node; the selector already
    // tried tfjs-node, so the advert would only mislead.
    Object.assign(this, { firstUse: false })
    this.pool = new BufferPool(options.poolBytes)
    this.pool.setEnabled(options.reuse)
    this.precision = options.precision
  }

  /**
   * f(), whose tensors' row counts change from call to call (early exit's and
   * mixture-of-depths' inference): buffers come in size classes and matmuls share one
   * primitive across row counts meanwhile (pool.ts setVarying, native/matmul.cc), rather than
   * allocating and creating anew for each count.
   */
  varyingRows<T>(f: () => T): T {
    const was = this.varying
    const set = (on: boolean) => {
      this.varying = on
      this.pool.setVarying(on)
      this.addon.setVaryingRows(on)
    }
    set(true)
    try {
      return f()
    } finally {
      set(was)
    }
  }

  /** A float32 output buffer for a native kernel (recycled when possible). */
  output(length: number): Float32Array {
    return this.pool.take(length)
  }

  /** Stores a kernel output computed into `values`. */
  out(shape: readonly number[], values: Float32Array): tf.TensorInfo {
    return this.makeTensorInfo(shape as number[], "float32", values)
  }

  /** Typed values of a tensor, for reading inside a kernel. */
  values(t: tf.TensorInfo): BackendValues {
    return this.data.get(t.dataId).values as BackendValues
  }

  /**
   * Whether `t`'s values can be overwritten: one tensor references its entry (refCount counts
   * reshapes and clones sharing it) and one entry its buffer, which no caller was handed.
   */
  sole(t: tf.TensorInfo): boolean {
    const entry = this.data.get(t.dataId)
    return entry !== undefined && entry.refCount === 1 && this.pool.exclusive(entry.values)
  }

  storedBytes(): number {
    return this.liveBytes
  }

  /** The most bytes of tensor data stored at once since the last resetPeak. */
  peakBytes(): number {
    return this.highBytes
  }

  resetPeak(): void {
    this.highBytes = this.liveBytes
  }

  private stored(values: BackendValues | undefined, sign: 1 | -1): void {
    if (!ArrayBuffer.isView(values)) return
    const seen = this.views.get(values.buffer)
    if (sign === 1) {
      if (seen) seen.entries++
      else {
        this.views.set(values.buffer, { entries: 1, bytes: values.byteLength })
        this.liveBytes += values.byteLength
        this.highBytes = Math.max(this.highBytes, this.liveBytes)
      }
    } else if (seen && --seen.entries === 0) {
      this.views.delete(values.buffer)
      this.liveBytes -= seen.bytes
    }
  }

  override write(values: BackendValues, shape: number[], dtype: tf.DataType): DataId {
    const id = super.write(values, shape, dtype)
    this.pool.retain(values)
    this.stored(values, 1)
    return id
  }

  override move(dataId: DataId, values: BackendValues, shape: number[], dtype: tf.DataType, refCount: number): void {
    super.move(dataId, values, shape, dtype, refCount)
    this.pool.retain(values)
    this.stored(values, 1)
  }

  override readSync(dataId: DataId): BackendValues {
    this.pool.escape(this.data.get(dataId)?.values)
    return super.readSync(dataId) as BackendValues
  }

  override disposeData(dataId: DataId, force = false): boolean {
    const values = this.data.get(dataId)?.values
    const removed = super.disposeData(dataId, force)
    if (removed && values !== undefined && !this.data.has(dataId)) {
      this.pool.release(values)
      this.stored(values, -1)
    }
    return removed
  }
}
