import type { PosencKind } from "../model/kind.js"
import { moduleFor, registered, type SpecOf, unionSchema } from "../model/registry.js"
import { alibi } from "./alibi.js"
import { learned } from "./learned.js"
import { none } from "./none.js"
import { rope } from "./rope.js"
import { sinusoidal } from "./sinusoidal.js"
import { t5 } from "./t5.js"
import { xpos } from "./xpos.js"

/** The position schemes, by tag. Registering a new one is one line here. */
export const posencKinds = {
  none,
  learned,
  sinusoidal,
  rope,
  alibi,
  t5,
  xpos,
} as const

export type PosencSpec = SpecOf<typeof posencKinds>
export type PosencTag = keyof typeof posencKinds
export type PosencOptions<K extends PosencTag> = Parameters<(typeof posencKinds)[K]["make"]>

export const posenc = <K extends PosencTag>(kind: K, ...options: PosencOptions<K>): PosencSpec =>
  (registered(posencKinds, "posenc", kind).make as (...o: PosencOptions<K>) => PosencSpec)(...options)

export const PosencSchema = unionSchema(posencKinds)
export const posencModule = (spec: PosencSpec) => moduleFor<PosencKind<PosencSpec>>(posencKinds, spec)
