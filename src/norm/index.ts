import type { NormKind } from "../model/kind.js"
import { moduleFor, registered, type SpecOf, unionSchema } from "../model/registry.js"
import { layer } from "./layer.js"
import { rms } from "./rms.js"

/** The normalisation kinds, by tag. Registering a new one is one line here. */
export const normKinds = {
  layer,
  rms,
} as const

export type NormSpec = SpecOf<typeof normKinds>
export type NormTag = keyof typeof normKinds
export type NormOptions<K extends NormTag> = Parameters<(typeof normKinds)[K]["make"]>

export const norm = <K extends NormTag>(kind: K, ...options: NormOptions<K>): NormSpec =>
  (registered(normKinds, "norm", kind).make as (...o: NormOptions<K>) => NormSpec)(...options)

export const NormSchema = unionSchema(normKinds)
export const normModule = (spec: NormSpec) => moduleFor<NormKind<NormSpec>>(normKinds, spec)
