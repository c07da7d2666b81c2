import type { NormDescription } from "../../kind.js"
import { entryFor, moduleFor, type SpecOf, type SpecOfTag } from "../../registry.js"
import { layer } from "./layer.js"
import { rms } from "./rms.js"

/** The normalisation kinds, by tag. Registering a new one is one line here and one in src/norm/index.ts. */
export const normKinds = {
  layer,
  rms,
} as const

export type NormSpec = SpecOf<typeof normKinds>
export type NormTag = keyof typeof normKinds
export type NormOf<K extends NormTag> = SpecOfTag<typeof normKinds, K>
export type NormOptions<K extends NormTag> = Parameters<(typeof normKinds)[K]["make"]>

export const norm = <K extends NormTag>(kind: K, ...options: NormOptions<K>): NormSpec =>
  (entryFor(normKinds, "norm", kind).make as (...o: NormOptions<K>) => NormSpec)(...options)

export const normModule = (spec: NormSpec) => moduleFor<NormDescription<NormSpec>>(normKinds, "norm", spec)
