import { Schema } from "effect"
import { PositiveInt, Rate } from "../model/fields.js"

/** The fields every attention kind has, and their defaults in the combinators. */
export const attentionFields = {
  op: Schema.Literal("attention"),
  heads: PositiveInt,
  bias: Schema.Boolean,
  dropout: Rate,
}

export interface AttentionBaseOptions {
  readonly heads: number
  readonly bias?: boolean
  readonly dropout?: number
}

export const attentionDefaults = (o: AttentionBaseOptions) => ({
  op: "attention" as const,
  heads: o.heads,
  bias: o.bias ?? true,
  dropout: o.dropout ?? 0,
})
