import type { NormOf, NormSpec, NormTag } from "../../dsl/kinds/norm/index.js"
import { moduleFor } from "../../dsl/registry.js"
import type { NormCompute } from "../model/kind.js"
import { layer } from "./layer.js"
import { rms } from "./rms.js"

/** How each norm computes, by the tags of its description (dsl/kinds/norm/index.ts). */
export const normCompute: { readonly [K in NormTag]: NormCompute<NormOf<K>> } = { layer, rms }

export const normApply = (spec: NormSpec) => moduleFor<NormCompute<NormSpec>>(normCompute, "norm", spec)
