import { Schema } from "effect"
import type { ScheduleDescription } from "./description.js"

const schema = Schema.TaggedStruct("constant", { lr: Schema.Finite.check(Schema.isGreaterThan(0)) })
export type Constant = typeof schema.Type

export const constantSchedule: ScheduleDescription<Constant> = {
  schema,
  label: (s) => `constant ${s.lr}`,
  at: (s) => s.lr,
}
