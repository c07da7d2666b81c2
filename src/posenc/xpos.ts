import type { XPos } from "../../dsl/kinds/posenc/xpos.js"
import type { PosencCompute } from "../model/kind.js"
import { queryKeyTables, rotateHalf } from "./rope.js"

const GAMMA = 0.4

/** ζ_j for pair j of a head of dimension d. */
export const xposZeta = (j: number, d: number): number => ((2 * j) / d + GAMMA) / (1 + GAMMA)

/**
 * torchscale centres the exponents on the middle of the sequence for range; that centre
 * moves as decoding proceeds, which would invalidate cached keys, so positions here are
 * absolute. Only n - m reaches the score, so the result is the same.
 */
/** The scale of pair j at pos for a head of dimension d: ζ_j^(pos/scaleBase) for queries (sign 1), its inverse for keys (−1). */
export const xposDecay = (spec: XPos, d: number, sign: 1 | -1) => (pos: number, j: number): number => xposZeta(j, d) ** ((sign * pos) / spec.scaleBase)

export const xpos: PosencCompute<XPos> = {
  hooks: (_p, spec) => ({
    queryKey: (q, k, qOffset, kOffset) => {
      const d = q.shape[3]
      if (d % 2 !== 0) throw new Error(`xpos: head dim ${d} is odd`)
      return [rotateHalf(q, qOffset, d / 2, spec.base, xposDecay(spec, d, 1)), rotateHalf(k, kOffset, d / 2, spec.base, xposDecay(spec, d, -1))]
    },
    rotation: (t, dh, offset) => {
      if (dh % 2 !== 0) throw new Error(`xpos: head dim ${dh} is odd`)
      return { half: dh / 2, tables: queryKeyTables(offset, t, dh, dh / 2, spec.base, xposDecay(spec, dh, 1), xposDecay(spec, dh, -1)) }
    },
  }),
}
