import { Schema } from "effect"

/** Field schemas shared by the spec nodes and kind modules. */
export const PositiveInt = Schema.Int.check(Schema.isGreaterThan(0))
export const NonNegativeInt = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))
export const PositiveNumber = Schema.Finite.check(Schema.isGreaterThan(0))
/** A dropout probability. 1 would zero everything, so it is excluded. */
export const Rate = Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0), Schema.isLessThan(1))
