import type { PosencOf, PosencSpec, PosencTag } from "../../dsl/kinds/posenc/index.js"
import { moduleFor } from "../../dsl/registry.js"
import type { PosencCompute } from "../model/kind.js"
import { alibi } from "./alibi.js"
import { learned } from "./learned.js"
import { rope } from "./rope.js"
import { sinusoidal } from "./sinusoidal.js"
import { t5 } from "./t5.js"
import { xpos } from "./xpos.js"

/** How each position scheme computes, by the tags of its description (dsl/kinds/posenc/index.ts). */
export const posencCompute: { readonly [K in PosencTag]: PosencCompute<PosencOf<K>> } = {
  none: {},
  learned,
  sinusoidal,
  rope,
  alibi,
  t5,
  xpos,
}

export const posencApply = (spec: PosencSpec) => moduleFor<PosencCompute<PosencSpec>>(posencCompute, "posenc", spec)
