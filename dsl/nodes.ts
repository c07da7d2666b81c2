import { Schema } from "effect"
import { type AttentionSpec, AttentionSchema } from "../src/attention/index.js"
import { FfnSchema, type FfnSpec } from "../src/ffn/ffn.js"
import { PositiveInt, Rate } from "../src/model/fields.js"
import { type NormSpec, NormSchema } from "../src/norm/index.js"
import { type PosencSpec, PosencSchema } from "../src/posenc/index.js"

/**
 * The structural nodes of a model expression. Leaves (attention, ffn, norm, posenc) come
 * from the kind registries; these nodes arrange them: a residual adds its body's output to
 * its input, a block applies its layers in order, depth repeats a block, and the decoder
 * wraps embeddings, position scheme, the stack, a final norm and the LM head.
 */
export type Layer = AttentionSpec | FfnSpec | NormSpec | ResidualSpec

export interface ResidualSpec {
  readonly op: "residual"
  readonly body: ReadonlyArray<Layer>
  /** Dropout on the branch output before it is added back (GPT-2's resid_pdrop). */
  readonly dropout: number
}

export interface BlockSpec {
  readonly op: "block"
  readonly layers: ReadonlyArray<Layer>
}

export interface DepthSpec {
  readonly op: "depth"
  readonly n: number
  readonly block: BlockSpec
}

export interface DecoderSpec {
  readonly op: "decoder"
  readonly vocab: number
  readonly width: number
  readonly context: number
  readonly posenc: PosencSpec
  readonly layers: DepthSpec
  readonly norm: NormSpec
  /** LM head shares the token embedding matrix (Press & Wolf 2017). */
  readonly tied: boolean
  /** Dropout on the embeddings. */
  readonly dropout: number
  /** Permits attention kinds that let a position see later tokens (absent: refused). */
  readonly allowNonCausal?: boolean
}

const LayerSchema: Schema.Codec<Layer> = Schema.Union([
  AttentionSchema,
  FfnSchema,
  NormSchema,
  Schema.suspend((): Schema.Codec<ResidualSpec> => ResidualSchema),
])

export const ResidualSchema: Schema.Codec<ResidualSpec> = Schema.Struct({
  op: Schema.Literal("residual"),
  body: Schema.Array(LayerSchema).check(Schema.isMinLength(1)),
  dropout: Rate,
})

export const BlockSchema: Schema.Codec<BlockSpec> = Schema.Struct({
  op: Schema.Literal("block"),
  layers: Schema.Array(LayerSchema).check(Schema.isMinLength(1)),
})

export const DepthSchema: Schema.Codec<DepthSpec> = Schema.Struct({
  op: Schema.Literal("depth"),
  n: PositiveInt,
  block: BlockSchema,
})

export const DecoderSchema: Schema.Codec<DecoderSpec> = Schema.Struct({
  op: Schema.Literal("decoder"),
  vocab: Schema.Int.check(Schema.isGreaterThanOrEqualTo(2)),
  width: PositiveInt,
  context: PositiveInt,
  posenc: PosencSchema,
  layers: DepthSchema,
  norm: NormSchema,
  tied: Schema.Boolean,
  dropout: Rate,
  allowNonCausal: Schema.optionalKey(Schema.Boolean),
})

export { LayerSchema }
