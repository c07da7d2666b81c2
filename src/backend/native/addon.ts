import { existsSync, readFileSync } from "node:fs"
import { createRequire } from "node:module"
import path from "node:path"
import { fileURLToPath } from "node:url"

/**
 * The compiled N-API addon (native/, built by `npm ci` through binding.gyp) and its typed
 * surface. Every function writes into a caller-provided output array.
 */
export interface NativeAddon {
  /** Returns "" on success, else why the product could not run (the caller falls back). */
  matmul(
    a: Float32Array,
    b: Float32Array,
    out: Float32Array,
    dims: readonly [batchA: number, batchB: number, m: number, n: number, k: number],
    transposeA: boolean,
    transposeB: boolean,
    bias: Float32Array | null,
    activation: number,
    alpha: number,
    precision: number,
  ): string
  /** Float32 ops, or int32 for add/sub/mul/max/min. */
  binary<T extends Float32Array | Int32Array>(op: number, a: T, aShape: readonly number[], b: T, bShape: readonly number[], out: T, outShape: readonly number[]): void
  /** Comparisons and logical ops with broadcasting, into a bool (Uint8Array) output. */
  compare<T extends Float32Array | Int32Array | Uint8Array>(op: number, a: T, aShape: readonly number[], b: T, bShape: readonly number[], out: Uint8Array, outShape: readonly number[]): void
  select(condition: Uint8Array, a: Float32Array, b: Float32Array, out: Float32Array): void
  pad(x: Float32Array, shape: readonly number[], before: readonly number[], outShape: readonly number[], value: number, out: Float32Array): void
  slice(x: Float32Array, shape: readonly number[], begin: readonly number[], outShape: readonly number[], out: Float32Array): void
  unary(op: number, x: Float32Array, out: Float32Array, alpha: number): void
  act(op: number, x: Float32Array, out: Float32Array, alpha: number): void
  actGrad(op: number, x: Float32Array, dy: Float32Array, out: Float32Array, alpha: number): void
  norm(x: Float32Array, gain: Float32Array, bias: Float32Array | null, rows: number, d: number, eps: number, center: boolean, y: Float32Array, mean: Float32Array, rstd: Float32Array): void
  normGrad(
    x: Float32Array,
    gain: Float32Array,
    mean: Float32Array,
    rstd: Float32Array,
    dy: Float32Array,
    rows: number,
    d: number,
    center: boolean,
    dx: Float32Array,
    dgain: Float32Array,
    dbias: Float32Array | null,
  ): void
  xent(x: Float32Array, targets: Int32Array, n: number, v: number, nll: Float32Array, lse: Float32Array): void
  xentGrad(x: Float32Array, lse: Float32Array, targets: Int32Array, scale: Float32Array, n: number, v: number, out: Float32Array): void
  softXent(s: Float32Array, t: Float32Array, n: number, v: number, invT: number, reverse: boolean, lseS: Float32Array, lseT: Float32Array, div: Float32Array): void
  softXentGrad(
    s: Float32Array,
    t: Float32Array,
    lse: Float32Array,
    targets: Int32Array,
    lseS: Float32Array,
    lseT: Float32Array,
    div: Float32Array,
    ceScale: Float32Array,
    kdScale: Float32Array,
    n: number,
    v: number,
    invT: number,
    reverse: boolean,
    out: Float32Array,
  ): void
  /** One AdamW step; scalars as src/backend/fused.ts ADAMW_UPDATE lists them. */
  adamw(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, scalars: Float32Array, decay: boolean, pOut: Float32Array, mOut: Float32Array, vOut: Float32Array): void
  /** Newton–Schulz orthogonalisation of g [rows, cols] (src/backend/fused.ts NEWTON_SCHULZ); throws if oneDNN's GEMM fails. */
  newtonSchulz(g: Float32Array, rows: number, cols: number, steps: number, coefficients: Float32Array, out: Float32Array): void
  /**
   * One Muon step of each matrix of a group, one matrix per thread (src/backend/fused.ts
   * MUON_UPDATE); scalars [β, 1 − β, 1 − lr·wd, lr·scale] per matrix, dims [rows, cols] per matrix.
   */
  muon(
    p: readonly Float32Array[],
    g: readonly Float32Array[],
    m: readonly Float32Array[],
    dims: readonly number[],
    scalars: Float32Array,
    decays: readonly boolean[],
    steps: number,
    nesterov: boolean,
    coefficients: Float32Array,
    pOut: readonly Float32Array[],
    mOut: readonly Float32Array[],
  ): void
  reduce(op: number, x: Float32Array, out: Float32Array, outer: number, r: number, inner: number): void
  softmax(x: Float32Array, out: Float32Array, rows: number, cols: number): void
  softmaxMargin(logits: Float32Array, out: Float32Array, rows: number, v: number): void
  rowCosines(a: Float32Array, b: Float32Array, out: Float32Array, rows: number, d: number): void
  /** Causal softmax of scores [rows / tq, tq, tk] (src/backend/fused.ts CAUSAL_SOFTMAX). */
  causalSoftmax(x: Float32Array, out: Float32Array, rows: number, tq: number, tk: number): void
  causalSoftmaxGrad(y: Float32Array, dy: Float32Array, dx: Float32Array, rows: number, tq: number, tk: number): void
  /** relu(x·w + b)'s backward pass from its output (src/backend/fused.ts RELU_BIAS_GRAD). */
  reluBiasGrad(y: Float32Array, dy: Float32Array, dz: Float32Array, db: Float32Array, rows: number, cols: number): void
  transpose<T extends Float32Array | Int32Array | Uint8Array>(x: T, shape: readonly number[], perm: readonly number[], out: T): void
  /** Returns the position of the first out-of-range index, or -1. */
  gather<T extends Float32Array | Int32Array | Uint8Array>(x: T, indices: Int32Array, out: T, outer: number, dim: number, inner: number): number
  scatterAdd(x: Float32Array, ids: Int32Array, out: Float32Array, count: number, inner: number, numSegments: number): void
  oneHot(indices: Int32Array, out: Float32Array, depth: number, on: number, off: number): void
  /**
   * A decoding program (native/kernels.h Program): ops over registers of [rows, width]
   * activations, with its own copy of the parameters (matrices transposed where asked); int8:
   * the linear and exit ops' weights stored as int8 blocks (native/kernels.h Q8Block).
   */
  decodeProgram(ops: readonly ProgramOp[], widths: readonly number[], result: number, params: readonly ProgramParam[], int8: boolean): DecodeProgram
  /** Binds an attention slot to its cache [batch, capacity, heads, dh] and rotation tables [positions, dh], until bound again. */
  decodeBind(program: DecodeProgram, slot: number, k: Float32Array, v: Float32Array, capacity: number, tables: RotationTables | null, positions: number): void
  /**
   * Register 0 ← x, then runs the program; the result is then in its result register.
   * extras: per attention slot its score bias and mask ([heads, t, offset + t]), flat, or null when none has any.
   */
  decodeStart(program: DecodeProgram, x: Float32Array, batch: number, t: number, offset: number, extras: readonly (Float32Array | Uint8Array | null)[] | null): void
  /** Binds the running state of a slot that keeps one (a causal Linformer's compressed keys and values), written in place by the calls. */
  decodeState(program: DecodeProgram, slot: number, state: Float32Array): void
  /** Copies values.length floats of a register, from offset, into values. */
  decodeRegister(program: DecodeProgram, register: number, values: Float32Array, offset: number): void
  /** Early exit: the block each row of the next calls must leave after (INT32_MIN: its confidence decides), or null for none forced. */
  decodeForce(program: DecodeProgram, forced: Int32Array | null): void
  /** Early exit: copies per row of the last call the block it left after into exits. */
  decodeExits(program: DecodeProgram, exits: Int32Array): void
  /** Mixture-of-depths: per attention slot the position its new keys start at, for the next calls; null: the call's offset for all. */
  decodeOffsets(program: DecodeProgram, offsets: Int32Array | null): void
  /** Mixture-of-depths: copies per block the rows the last call routed through it (0 for a block not routed). */
  decodeRouted(program: DecodeProgram, routed: Int32Array): void
  info(): { threads: number; physicalCores: number; isa: string; bf16Native: boolean }
  setThreads(n: number): void
  /** Whether the row counts of the matmuls that follow vary from call to call (native/matmul.cc). */
  setVaryingRows(on: boolean): void
  /**
   * Fused attention (native/kernels.h attention): q [bh, t, dh] over k, v [bh, tk, dh] give out and
   * the rows' log-sum-exp lse [bh, t]; query i sees keys [lo[i], hi[i]) of ranges [lo | hi];
   * slopes [heads] add ALiBi's slopes[h]·(i − j); rotation rotates q and k first (RoPE, xPos;
   * t = tk), and the gradients come back to the unrotated ones; dlse is the gradient of lse.
   */
  attention(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    dims: AttentionDims,
    ranges: Int32Array,
    slopes: Float32Array | null,
    rotation: AttentionRotation | null,
    out: Float32Array,
    lse: Float32Array,
  ): void
  attentionGrad(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    out: Float32Array,
    lse: Float32Array,
    dout: Float32Array,
    dlse: Float32Array | null,
    dims: AttentionDims,
    ranges: Int32Array,
    slopes: Float32Array | null,
    rotation: AttentionRotation | null,
    dq: Float32Array,
    dk: Float32Array,
    dv: Float32Array,
  ): void
}

export type AttentionDims = readonly [bh: number, heads: number, t: number, tk: number, dh: number]

/** Pairs (j, j + half) rotated by tables [qcos | qsin | kcos | ksin], each [t, dh]. */
export type AttentionRotation = readonly [half: number, tables: Float32Array]

/** A native decoding program (opaque; freed when collected). */
export type DecodeProgram = { readonly __brand: "DecodeProgram" }

/** One op of a decoding program; fields as native/kernels.h ProgramOp names them (absent: unused). */
export interface ProgramOp {
  readonly code: number
  readonly x?: number
  readonly y?: number
  readonly b?: number
  readonly gain?: number
  readonly bias?: number
  readonly eps?: number
  readonly center?: boolean
  readonly targets?: readonly { readonly w: number; readonly bias: number; readonly y: number }[]
  readonly q?: number
  readonly k?: number
  readonly v?: number
  readonly heads?: number
  readonly dh?: number
  readonly half?: number
  readonly slot?: number
  readonly slopes?: number
  readonly scale?: number
  readonly act?: number
  readonly alpha?: number
  readonly window?: number
  readonly dilation?: number
  readonly globals?: number
  readonly kg?: number
  readonly vg?: number
  readonly wqg?: number
  readonly bqg?: number
  readonly e?: number
  readonly f?: number
  readonly rank?: number
  readonly length?: number
  /** Runs on the compact rows: early exit's still running, mixture-of-depths' routed (native/kernels.h ProgramOp). */
  readonly compact?: boolean
  /** Linformer's block size; early exit's and mixture-of-depths' block index. */
  readonly block?: number
  readonly measure?: number
  readonly threshold?: number
  /** Mixture-of-depths' combine: the router's logits register. */
  readonly g?: number
}

export interface ProgramParam {
  readonly values: Float32Array
  readonly rows: number
  readonly cols: number
  /** Copied as [cols, rows]. */
  readonly transpose: boolean
}

/** cos and sin tables for queries and for keys, [positions, dh] each. */
export type RotationTables = readonly [qcos: Float32Array, qsin: Float32Array, kcos: Float32Array, ksin: Float32Array]

/** Where node-gyp puts the addon; TFJS_NATIVE_ADDON points elsewhere (e.g. to test the fallback). */
export const ADDON_PATH =
  process.env.TFJS_NATIVE_ADDON ?? fileURLToPath(new URL("../../../build/Release/tfjs_native.node", import.meta.url))

/** What to run when the addon is missing: the one line the fallback message prints. */
export const INSTALL_HINT = "apt-get install -y libdnnl-dev && npm run build:native"

export type AddonLoad = { readonly ok: true; readonly addon: NativeAddon } | { readonly ok: false; readonly reason: string }

let loaded: AddonLoad | undefined

/** Instruction-set flags, as /proc/cpuinfo names them, that -march=native code may use. */
const ISA_FLAG = /^(sse|ssse|avx|amx|fma|f16c|bmi|adx|sha|aes|vaes|pclmul|vpclmul|gfni|movbe|popcnt|abm|lzcnt)/

/** The ISA flags a build CPU had and this one lacks: the addon would die on their instructions. */
export const missingCpuFlags = (built: readonly string[], current: readonly string[]): string[] => {
  const have = new Set(current)
  return built.filter((f) => ISA_FLAG.test(f) && !have.has(f))
}

/** Why the addon must not load on this CPU (native/build.mjs records the build CPU's flags), or undefined. */
const cpuMismatch = (): string | undefined => {
  const recorded = path.join(path.dirname(ADDON_PATH), "cpu-flags.json")
  if (!existsSync(recorded) || !existsSync("/proc/cpuinfo")) return undefined
  const built = (JSON.parse(readFileSync(recorded, "utf8")) as { flags: string[] }).flags
  const current = /^flags\s*:(.*)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1]?.trim().split(/\s+/) ?? []
  const missing = missingCpuFlags(built, current)
  return missing.length === 0
    ? undefined
    : `the addon was built on a CPU with ${missing.join(", ")}, which this one lacks; rebuild it here with npm run build:native`
}

/** Loads the addon once; a failure is a value (the caller falls back to stock tfjs). */
export const loadAddon = (): AddonLoad => {
  if (loaded) return loaded
  try {
    const mismatch = cpuMismatch()
    if (mismatch !== undefined) {
      loaded = { ok: false, reason: mismatch }
      return loaded
    }
    const addon = createRequire(import.meta.url)(ADDON_PATH) as NativeAddon
    loaded = { ok: true, addon }
  } catch (e) {
    const message = e instanceof Error ? e.message.split("\n")[0] : String(e)
    loaded = { ok: false, reason: message }
  }
  return loaded
}
