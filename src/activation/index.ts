import type { ActivationKind } from "../model/kind.js"
import { moduleFor, registered, type SpecOf, unionSchema } from "../model/registry.js"
import { gelu } from "./gelu.js"
import { geluTanh } from "./gelu-tanh.js"
import { geglu, reglu, swiglu } from "./glu.js"
import { relu } from "./relu.js"
import { relu2 } from "./relu2.js"
import { silu, swish } from "./swish.js"

/** The FFN activations, by tag. Registering a new one is one line here. */
export const activationKinds = {
  relu,
  gelu,
  "gelu-tanh": geluTanh,
  swish,
  silu,
  relu2,
  swiglu,
  geglu,
  reglu,
} as const

export type ActivationSpec = SpecOf<typeof activationKinds>
export type ActivationTag = keyof typeof activationKinds
export type ActivationOptions<K extends ActivationTag> = Parameters<(typeof activationKinds)[K]["make"]>

export const activation = <K extends ActivationTag>(kind: K, ...options: ActivationOptions<K>): ActivationSpec =>
  (registered(activationKinds, "activation", kind).make as (...o: ActivationOptions<K>) => ActivationSpec)(...options)

export const ActivationSchema = unionSchema(activationKinds)
export const activationModule = (spec: ActivationSpec) => moduleFor<ActivationKind<ActivationSpec>>(activationKinds, spec)
