import * as tf from "@tensorflow/tfjs"
import type { PosencOf, PosencSpec, PosencTag } from "../../dsl/kinds/posenc/index.js"
import { moduleFor } from "../../dsl/registry.js"
import type { RotationTables } from "../backend/native/addon.js"
import { alibiSlopes } from "../posenc/alibi.js"
import { rotationTables } from "../posenc/rope.js"
import { sinusoidTable } from "../posenc/sinusoidal.js"
import { xposDecay } from "../posenc/xpos.js"
import type { Step } from "./step.js"

/**
 * What each position scheme contributes to native decoding, with the same float32 values as
 * its tfjs computation (src/posenc/): an addition to the embeddings, rotation tables for
 * queries and keys (made for all positions at once, as the cache's capacity grows), ALiBi's
 * slopes, or a bias table. Typed over the registry's tags, so a new scheme does not compile
 * until it says what it contributes.
 */
export interface NativePosition<S> {
  /** Adds the scheme to the embeddings x [batch · t, width] of positions offset.. (in place). */
  readonly embed?: (spec: S, x: Float32Array, step: Step) => void
  /** Rotary schemes: the pairs (j, j + half) rotated in a head of dh, and the tables of positions 0.. (see RotationTables). */
  readonly rotary?: {
    readonly half: (spec: S, dh: number) => number
    readonly tables: (spec: S, positions: number, dh: number) => RotationTables
  }
  /** Scores get slopes[h] · (i − j): ALiBi's slopes, negated. */
  readonly slopes?: (spec: S, heads: number) => Float32Array
  /** Each call's additive scores [heads, t, offset + t], for its t queries from `offset` (a routed block's own held length, else the call's). */
  readonly bias?: (spec: S, step: Step, heads: number, offset: number) => Float32Array
}

/** Adds table [t, width] (rows from `from`) to every sequence of x. */
const addPerPosition = (x: Float32Array, table: Float32Array, step: Step, from: number): void => {
  const d = step.dims.width
  for (let b = 0; b < step.batch; b++) {
    for (let i = 0; i < step.t; i++) {
      const row = (b * step.t + i) * d
      const at = (from + i) * d
      for (let j = 0; j < d; j++) x[row + j] = x[row + j]! + table[at + j]!
    }
  }
}

const nativePositions: { readonly [K in PosencTag]: NativePosition<PosencOf<K>> } = {
  none: {},
  learned: {
    embed: (_spec, x, step) => addPerPosition(x, step.values("posenc.table"), step, step.offset),
  },
  sinusoidal: {
    embed: (spec, x, step) => {
      const d = step.dims.width
      if (spec.scaleEmbeddings) {
        const scale = Math.fround(Math.sqrt(d))
        for (let i = 0; i < x.length; i++) x[i] = x[i]! * scale
      }
      addPerPosition(x, sinusoidTable(step.t, d, step.offset), step, 0)
    },
  },
  rope: {
    rotary: {
      half: (spec, dh) => (spec.dims ?? dh) / 2,
      tables: (spec, positions, dh) => {
        const { cos, sin } = rotationTables(0, positions, dh, (spec.dims ?? dh) / 2, spec.base)
        return [cos, sin, cos, sin]
      },
    },
  },
  xpos: {
    rotary: {
      half: (_spec, dh) => dh / 2,
      tables: (spec, positions, dh) => {
        const q = rotationTables(0, positions, dh, dh / 2, spec.base, xposDecay(spec, dh, 1))
        const k = rotationTables(0, positions, dh, dh / 2, spec.base, xposDecay(spec, dh, -1))
        return [q.cos, q.sin, k.cos, k.sin]
      },
    },
  },
  alibi: {
    slopes: (_spec, heads) => Float32Array.from(alibiSlopes(heads), (m) => -m),
  },
  t5: {
    // The scheme's own tfjs bias, read once per call, head count and offset.
    bias: (_spec, step, heads, offset) =>
      step.memo(`t5 ${heads} ${offset}`, () => {
        const bias = tf.tidy(() => step.position.scoreBias!(heads, step.t, offset + step.t, offset, 0))
        try {
          return bias.dataSync() as Float32Array
        } finally {
          bias.dispose()
        }
      }),
  },
}

export const nativePosition = (spec: PosencSpec): NativePosition<PosencSpec> => moduleFor<NativePosition<PosencSpec>>(nativePositions, "posenc", spec)
