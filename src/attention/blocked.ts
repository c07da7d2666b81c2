import * as tf from "@tensorflow/tfjs"
import type { Visible } from "../../dsl/kind.js"
import type { LayerCtx, PositionHooks } from "../model/kind.js"

/**
 * Machinery shared by the sparse attention kinds (sparse-strided, sparse-fixed,
 * sliding-window, longformer, linformer-causal): attention computed as a joint softmax over
 * a few "parts", each a set of keys gathered for every query without forming the T×T score
 * matrix — a band of blocks ([B,H,nBlocks,w,2w] by batched matmul), a strided column layout,
 * or a fixed list of key positions. A part's extra keys are hidden by its own visibility
 * predicate, so the union of the parts' predicates is exactly the kind's pattern.
 */
export const HIDDEN = -1e9

export interface Part {
  /** Scaled q·k scores [B, H, Tp, n], query rows in sequence order (Tp: padded length). */
  readonly scores: tf.Tensor4D
  /** Attention weights over this part's keys [B, H, Tp, n] → weighted values [B, H, Tp, dh]. */
  readonly values: (weights: tf.Tensor4D) => tf.Tensor4D
  /** Where the keys are: absolute positions per score entry, or a ready mask for keys without one. */
  readonly keys: PositionalKeys | { readonly mask: tf.Tensor3D }
}

export interface PositionalKeys {
  /** Key position of each score entry [Tp × n]; negative where there is no key (padding). */
  readonly pos: Int32Array
  readonly visible: Visible
  /** Whether `visible` depends on the head; otherwise one mask serves all heads. */
  readonly perHead: boolean
  /** Set when each run of this many rows has the same ascending contiguous keys (a band). */
  readonly blockRows?: number
}

/** Pads the sequence axis of [B, H, T, dh] with zeros to length tp. */
export const padSeq = (x: tf.Tensor4D, tp: number): tf.Tensor4D =>
  x.shape[2] === tp ? x : (tf.pad(x, [[0, 0], [0, 0], [0, tp - x.shape[2]], [0, 0]]) as tf.Tensor4D)

export const roundUp = (t: number, w: number): number => Math.ceil(t / w) * w

/**
 * Query blocks of w attend to the keys of their own block and, with `previous`, of the block
 * before it: scores [B,H,nBlocks,w,2w] by batched matmul against per-block key windows
 * [B,H,nBlocks,2w,dh]. Work and memory are Tp·2w, linear in length.
 */
export const bandParts = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, w: number, previous: boolean, visible: Visible, perHead: boolean): Part[] => {
  const [b, h, tp, dh] = q.shape
  const n = tp / w
  const kw = previous ? 2 * w : w
  const window = (x: tf.Tensor4D): tf.Tensor3D => {
    const blocks = x.reshape([b, h, n, w, dh])
    if (!previous) return blocks.reshape([b * h * n, w, dh])
    const before = tf.slice(tf.pad(blocks, [[0, 0], [0, 0], [1, 0], [0, 0], [0, 0]]), [0, 0, 0, 0, 0], [b, h, n, w, dh])
    return tf.concat([before, blocks], 3).reshape([b * h * n, kw, dh])
  }
  const vWindow = window(v)
  const pos = new Int32Array(tp * kw)
  for (let i = 0; i < tp; i++) {
    const first = (Math.floor(i / w) - (previous ? 1 : 0)) * w
    // Keys before the sequence keep their (negative) positions, hidden by the mask, so every block's keys are contiguous.
    for (let c = 0; c < kw; c++) pos[i * kw + c] = first + c
  }
  return [
    {
      scores: tf.matMul(q.reshape([b * h * n, w, dh]), window(k), false, true).reshape([b, h, tp, kw]) as tf.Tensor4D,
      values: (weights) => tf.matMul(weights.reshape([b * h * n, w, kw]), vWindow).reshape([b, h, tp, dh]) as tf.Tensor4D,
      keys: { pos, visible, perHead, blockRows: w },
    },
  ]
}

/**
 * Keys whose distance to the query is a multiple of l (Child et al.'s strided heads): the
 * sequence as R = Tp/l rows of l, transposed so each column is a sequence of R positions,
 * with attention inside columns: scores [B,H,l,R,R], work Tp·R = Tp²/l.
 */
export const stridePart = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, l: number, visible: Visible): Part => {
  const [b, h, tp, dh] = q.shape
  const r = tp / l
  const columns = (x: tf.Tensor4D): tf.Tensor3D => x.reshape([b, h, r, l, dh]).transpose([0, 1, 3, 2, 4]).reshape([b * h * l, r, dh])
  const vColumns = columns(v)
  const scores = tf.matMul(columns(q), columns(k), false, true).reshape([b, h, l, r, r]).transpose([0, 1, 3, 2, 4]).reshape([b, h, tp, r]) as tf.Tensor4D
  const pos = new Int32Array(tp * r)
  for (let i = 0; i < tp; i++) for (let c = 0; c < r; c++) pos[i * r + c] = c * l + (i % l)
  return {
    scores,
    values: (weights) => {
      const byColumn = weights.reshape([b, h, r, l, r]).transpose([0, 1, 3, 2, 4]).reshape([b * h * l, r, r])
      return tf.matMul(byColumn, vColumns).reshape([b, h, l, r, dh]).transpose([0, 1, 3, 2, 4]).reshape([b, h, tp, dh]) as tf.Tensor4D
    },
    keys: { pos, visible, perHead: false },
  }
}

/**
 * Rows `positions` of x [B, H, T, dh] as [B, H, P, dh], by a one-hot matmul: tfjs's gather
 * gradient on the cpu backend loops over every row of x, one kernel each.
 */
export const selectRows = (x: tf.Tensor4D, positions: ReadonlyArray<number>): tf.Tensor4D => {
  const [b, h, t, dh] = x.shape
  if (positions.length === t && positions.every((p, i) => p === i)) return x
  const pick = tf.oneHot(tf.tensor1d(positions as number[], "int32"), t).reshape([1, positions.length, t])
  return tf.matMul(pick, x.reshape([b * h, t, dh])).reshape([b, h, positions.length, dh]) as tf.Tensor4D
}

/** The same keys ks, vs [B, H, P, dh] at `positions` for every query (summary columns, global tokens): work Tp·P. */
export const listPart = (q: tf.Tensor4D, ks: tf.Tensor4D, vs: tf.Tensor4D, positions: ReadonlyArray<number>, visible: Visible, perHead: boolean): Part => {
  const tp = q.shape[2]
  const n = positions.length
  const pos = new Int32Array(tp * n)
  for (let i = 0; i < tp; i++) pos.set(positions, i * n)
  return {
    scores: tf.matMul(q, ks, false, true) as tf.Tensor4D,
    values: (weights) => tf.matMul(weights, vs) as tf.Tensor4D,
    keys: { pos, visible, perHead },
  }
}

/** What the joint softmax needs besides the parts. */
export interface Frame {
  /** Real (unpadded) sequence length; rows beyond it are padding and are discarded. */
  readonly t: number
  /** Absolute position of row 0. */
  readonly offset: number
  /** Heads of the whole layer, and the first head of this group (for per-head hooks). */
  readonly heads: number
  readonly firstHead: number
  readonly position: PositionHooks
  readonly dropout: (x: tf.Tensor) => tf.Tensor
}

/** Rows per scoreBias call when gathering a position scheme's bias for a part's keys. */
const BIAS_ROWS = 64

/**
 * The position scheme's bias for a part's score entries: scoreBias over the contiguous key
 * span that each run of query rows needs, then gathered to the part's layout. Hidden entries
 * take an arbitrary bias (the mask removes them).
 */
const partBias = (frame: Frame, hg: number, tp: number, n: number, keys: PositionalKeys, shown: Uint8Array): tf.Tensor3D => {
  const scoreBias = frame.position.scoreBias!
  const pos = keys.pos
  const blocks: tf.Tensor[] = []
  const heads = (bias: tf.Tensor3D) => (hg === frame.heads ? bias : tf.slice(bias, [frame.firstHead, 0, 0], [hg, bias.shape[1], bias.shape[2]]))
  // A band's blocks are exactly scoreBias's contiguous ranges: no gather, whose cpu gradient is slow.
  for (let start = 0; keys.blockRows !== undefined && start < frame.t; start += keys.blockRows) {
    const rows = Math.min(keys.blockRows, frame.t - start)
    blocks.push(heads(scoreBias(frame.heads, rows, n, frame.offset + start, frame.offset + pos[start * n]!)))
  }
  for (let start = 0; keys.blockRows === undefined && start < frame.t; start += BIAS_ROWS) {
    const rows = Math.min(BIAS_ROWS, frame.t - start)
    let lo = Infinity
    let hi = -Infinity
    for (let e = start * n; e < (start + rows) * n; e++) {
      if (shown[e]) {
        lo = Math.min(lo, pos[e]!)
        hi = Math.max(hi, pos[e]!)
      }
    }
    if (lo > hi) {
      blocks.push(tf.zeros([hg, rows, n]))
      continue
    }
    const span = hi - lo + 1
    const index = new Int32Array(rows * n)
    for (let a = 0; a < rows; a++) {
      for (let c = 0; c < n; c++) {
        const e = (start + a) * n + c
        index[a * n + c] = shown[e] ? a * span + pos[e]! - lo : 0
      }
    }
    const mine = heads(scoreBias(frame.heads, rows, span, frame.offset + start, frame.offset + lo)).reshape([hg, rows * span])
    blocks.push(tf.gather(mine, tf.tensor1d(index, "int32"), 1).reshape([hg, rows, n]))
  }
  if (tp > frame.t) blocks.push(tf.zeros([hg, tp - frame.t, n]))
  return tf.concat(blocks, 1) as tf.Tensor3D
}

/**
 * Softmax over the union of the parts' keys, weighted values summed back [B, Hg, Tp, dh].
 * A row that sees no key at all (possible in some sparse heads) gets a zero output rather
 * than a softmax over hidden keys.
 */
export const jointAttention = (parts: ReadonlyArray<Part>, frame: Frame): tf.Tensor4D => {
  const [, hg, tp] = parts[0]!.scores.shape
  const live = new Uint8Array(hg * tp)
  // Padding rows (i ≥ t) are discarded by the caller, so only real rows count as dead.
  const finish = (out: tf.Tensor4D): tf.Tensor4D =>
    live.some((x, e) => x === 0 && e % tp < frame.t) ? (tf.mul(out, tf.tensor4d(Float32Array.from(live), [1, hg, tp, 1])) as tf.Tensor4D) : out
  const scored = parts.map((part) => {
    const n = part.scores.shape[3]
    const keys = part.keys
    // Keys without a position (compressed ones) never make a row live: their kinds pair them with a band.
    if ("mask" in keys) {
      if (frame.position.scoreBias) throw new Error("a position scheme with a score bias cannot apply to compressed keys, which have no position")
      return tf.add(part.scores, keys.mask)
    }
    const mh = keys.perHead ? hg : 1
    const mask = new Float32Array(mh * tp * n)
    const shown = new Uint8Array(tp * n)
    for (let h = 0; h < mh; h++) {
      for (let i = 0; i < tp; i++) {
        let any = 0
        for (let c = 0; c < n; c++) {
          const e = i * n + c
          const j = keys.pos[e]!
          if (j >= 0 && j <= i && keys.visible(frame.firstHead + h, frame.offset + i, frame.offset + j)) {
            shown[e] = 1
            any = 1
          } else mask[h * tp * n + e] = HIDDEN
        }
        if (any) for (let g = keys.perHead ? h : 0; g < (keys.perHead ? h + 1 : hg); g++) live[g * tp + i] = 1
      }
    }
    const masked = tf.add(part.scores, tf.tensor3d(mask, [mh, tp, n]))
    return frame.position.scoreBias ? tf.add(masked, partBias(frame, hg, tp, n, keys, shown)) : masked
  })
  // One softmax over the parts' keys side by side; the native backend's slices (the split
  // here and the gradient of the concat) copy whole runs, so this costs no more than one part.
  if (scored.length === 1) return finish(parts[0]!.values(frame.dropout(tf.softmax(scored[0]!)) as tf.Tensor4D))
  const weights = tf.split(frame.dropout(tf.softmax(tf.concat(scored, 3))), scored.map((s) => s.shape[3]!), 3)
  const out = parts.map((p, i) => p.values(weights[i] as tf.Tensor4D)).reduce((a, c) => tf.add(a, c) as tf.Tensor4D)
  return finish(out)
}

/**
 * Cached decoding: the new queries [B,H,t,dh] at positions offset.. against every cached key
 * (positions 0..), masked by the kind's pattern. Costs t·T per step, like dense attention.
 */
export const maskedAttention = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, offset: number, visible: Visible, ctx: LayerCtx, rate: number): tf.Tensor4D => {
  const [, h, t] = q.shape
  const tk = k.shape[2]
  const mask = new Float32Array(h * t * tk)
  const live = new Float32Array(h * t)
  for (let g = 0; g < h; g++) {
    for (let i = 0; i < t; i++) {
      for (let j = 0; j < tk; j++) {
        if (j <= offset + i && visible(g, offset + i, j)) live[g * t + i] = 1
        else mask[(g * t + i) * tk + j] = HIDDEN
      }
    }
  }
  let scores = tf.add(tf.matMul(q, k, false, true), tf.tensor3d(mask, [h, t, tk]))
  if (ctx.position.scoreBias) scores = tf.add(scores, ctx.position.scoreBias(h, t, tk, offset, 0))
  const out = tf.matMul(ctx.dropout(tf.softmax(scores), rate) as tf.Tensor4D, v)
  return tf.mul(out, tf.tensor4d(live, [1, h, t, 1])) as tf.Tensor4D
}

/** A group of consecutive heads sharing one pattern, with the parts that compute it. */
export interface HeadGroup {
  readonly from: number
  readonly to: number
  readonly parts: (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D) => Part[]
}

/**
 * Runs each head group's parts on padded q, k, v and returns [B, H, t, dh] for the real rows.
 */
export const groupedAttention = (
  q: tf.Tensor4D,
  k: tf.Tensor4D,
  v: tf.Tensor4D,
  tp: number,
  groups: ReadonlyArray<HeadGroup>,
  ctx: LayerCtx,
  rate: number,
): tf.Tensor4D => {
  const [b, h, t, dh] = q.shape
  const [qp, kp, vp] = [padSeq(q, tp), padSeq(k, tp), padSeq(v, tp)]
  const heads = (x: tf.Tensor4D, g: HeadGroup): tf.Tensor4D =>
    g.from === 0 && g.to === h ? x : (tf.slice(x, [0, g.from, 0, 0], [b, g.to - g.from, tp, dh]) as tf.Tensor4D)
  const outs = groups.map((g) => {
    const frame: Frame = { t, offset: ctx.offset, heads: h, firstHead: g.from, position: ctx.position, dropout: (w) => ctx.dropout(w, rate) }
    const parts = g.parts(heads(qp, g), heads(kp, g), heads(vp, g))
    // No keys at all (e.g. fixed summary heads on a sequence shorter than the first summary).
    return parts.length === 0 ? (tf.zeros([b, g.to - g.from, tp, dh]) as tf.Tensor4D) : jointAttention(parts, frame)
  })
  const all = outs.length === 1 ? outs[0]! : (tf.concat(outs, 1) as tf.Tensor4D)
  return tp === t ? all : (tf.slice(all, [0, 0, 0, 0], [b, h, t, dh]) as tf.Tensor4D)
}
