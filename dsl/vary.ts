import { mapBlocks, type Which } from "./blocks.js"
import type { FfnSpec } from "./ffn.js"
import type { ActivationSpec } from "./kinds/activation/index.js"
import type { AttentionSpec } from "./kinds/attention/index.js"
import type { NormSpec } from "./kinds/norm/index.js"
import type { PosencSpec } from "./kinds/posenc/index.js"
import type { BlockSpec, DecoderSpec, Layer } from "./nodes.js"

/**
 * Making variants of a spec in code: `override` patches fields, `replace` swaps every node
 * of one kind, `sweep` makes the named cross product of several axes.
 */
export type DeepPartial<T> = T extends ReadonlyArray<unknown>
  ? T
  : T extends object
    ? { readonly [K in keyof T]?: DeepPartial<T[K]> }
    : T

const isPlainObject = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

const merge = (base: unknown, patch: unknown): unknown => {
  if (!isPlainObject(base) || !isPlainObject(patch)) return patch === undefined ? base : patch
  // A patch that changes a node's kind replaces the node: the old kind's options would not apply.
  const retag = ("kind" in patch && patch["kind"] !== base["kind"]) || ("op" in patch && patch["op"] !== base["op"])
  if (retag) return patch
  const out: Record<string, unknown> = { ...base }
  for (const [k, v] of Object.entries(patch)) out[k] = merge(base[k], v)
  return out
}

/** `override(base, { width: 384, layers: { n: 6 } })`: a new spec with those fields changed. */
export const override = (base: DecoderSpec, patch: DeepPartial<DecoderSpec>): DecoderSpec => merge(base, patch) as DecoderSpec

export interface Replacements {
  readonly attention?: (a: AttentionSpec) => AttentionSpec
  readonly ffn?: (f: FfnSpec) => FfnSpec
  readonly activation?: (a: ActivationSpec) => ActivationSpec
  /** Every norm, the final one included. */
  readonly norm?: (n: NormSpec) => NormSpec
  readonly posenc?: (p: PosencSpec) => PosencSpec
}

const mapLayer = (layer: Layer, r: Replacements): Layer => {
  switch (layer.op) {
    case "attention":
      return r.attention ? r.attention(layer) : layer
    case "norm":
      return r.norm ? r.norm(layer) : layer
    case "ffn": {
      const f = r.ffn ? r.ffn(layer) : layer
      return r.activation ? { ...f, activation: r.activation(f.activation) } : f
    }
    case "residual":
      return { ...layer, body: layer.body.map((l) => mapLayer(l, r)) }
  }
}

/** The block with every matching node mapped: for per-block changes with `mapBlocks`. */
export const replaceIn = (block: BlockSpec, r: Replacements): BlockSpec => ({ ...block, layers: block.layers.map((l) => mapLayer(l, r)) })

/**
 * `replace(base, { activation: () => activation("gelu") })`: every matching node, mapped.
 * With `{ blocks }`, only inside the chosen blocks (and then neither the position scheme nor
 * the final norm, which belong to no block): `replace(base, { attention: () => window },
 * { blocks: (i) => i % 4 !== 3 })` makes every 4th block the only one with the old attention.
 */
export const replace = (base: DecoderSpec, r: Replacements, options: { readonly blocks?: Which } = {}): DecoderSpec => {
  const whole = options.blocks === undefined
  const mapped = mapBlocks(base, options.blocks ?? (() => true), (b) => replaceIn(b, r))
  return {
    ...mapped,
    posenc: whole && r.posenc ? r.posenc(base.posenc) : base.posenc,
    norm: whole && r.norm ? r.norm(base.norm) : base.norm,
  }
}

export interface SweepAxes {
  readonly posenc?: ReadonlyArray<PosencSpec>
  readonly attention?: ReadonlyArray<AttentionSpec>
  readonly ffn?: ReadonlyArray<FfnSpec>
  readonly activation?: ReadonlyArray<ActivationSpec>
  readonly norm?: ReadonlyArray<NormSpec>
  readonly width?: ReadonlyArray<number>
  readonly context?: ReadonlyArray<number>
  readonly depth?: ReadonlyArray<number>
  readonly tied?: ReadonlyArray<boolean>
  readonly dropout?: ReadonlyArray<number>
}

type Axis = keyof SweepAxes

const apply = (spec: DecoderSpec, axis: Axis, value: unknown): DecoderSpec => {
  switch (axis) {
    case "posenc":
      return replace(spec, { posenc: () => value as PosencSpec })
    case "attention":
      return replace(spec, { attention: () => value as AttentionSpec })
    case "ffn":
      return replace(spec, { ffn: () => value as FfnSpec })
    case "activation":
      return replace(spec, { activation: () => value as ActivationSpec })
    case "norm":
      return replace(spec, { norm: () => value as NormSpec })
    case "depth":
      if (spec.layers.op !== "depth") throw new Error("sweep: the depth axis repeats the block of depth(n, block); this model is a stack of different blocks")
      return { ...spec, layers: { ...spec.layers, n: value as number } }
    case "width":
    case "context":
    case "tied":
    case "dropout":
      return { ...spec, [axis]: value }
  }
}

/** A value's part of a variant name: the kind tag for nodes, `width384` for scalars. */
const valueNames = (axis: Axis, values: ReadonlyArray<unknown>): string[] => {
  const raw = values.map((v) => {
    if (isPlainObject(v)) return String(v["kind"] ?? (isPlainObject(v["activation"]) ? v["activation"]["kind"] : v["op"]))
    return `${axis}${String(v)}`
  })
  return raw.map((name, i) => (raw.filter((n) => n === name).length > 1 ? `${name}-${i}` : name))
}

/**
 * The cross product of the axes, as named variants: one axis gives names like "rope",
 * several join them, "rope_gelu". Insertion order follows the axes as written.
 */
export const sweep = (base: DecoderSpec, axes: SweepAxes): Readonly<Record<string, DecoderSpec>> => {
  let variants: Array<[string[], DecoderSpec]> = [[[], base]]
  for (const [axis, values] of Object.entries(axes) as Array<[Axis, ReadonlyArray<unknown>]>) {
    if (values.length === 0) throw new Error(`sweep: axis "${axis}" has no values`)
    const names = valueNames(axis, values)
    variants = variants.flatMap(([n, spec]) => values.map((v, i): [string[], DecoderSpec] => [[...n, names[i]!], apply(spec, axis, v)]))
  }
  return Object.fromEntries(variants.map(([n, spec]) => [n.length === 0 ? "base" : n.join("_"), spec]))
}
