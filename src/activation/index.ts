import type { ActivationOf, ActivationSpec, ActivationTag } from "../../dsl/kinds/activation/index.js"
import { moduleFor } from "../../dsl/registry.js"
import type { ActivationCompute } from "../model/kind.js"
import { gelu } from "./gelu.js"
import { geluTanh } from "./gelu-tanh.js"
import { geglu, reglu, swiglu } from "./glu.js"
import { relu } from "./relu.js"
import { relu2 } from "./relu2.js"
import { silu, swish } from "./swish.js"

/** How each activation computes, by the tags of its description (dsl/kinds/activation/index.ts). */
export const activationCompute: { readonly [K in ActivationTag]: ActivationCompute<ActivationOf<K>> } = {
  relu,
  gelu,
  "gelu-tanh": geluTanh,
  swish,
  silu,
  relu2,
  swiglu,
  geglu,
  reglu,
}

export const activationApply = (spec: ActivationSpec) => moduleFor<ActivationCompute<ActivationSpec>>(activationCompute, "activation", spec)
