import type { NamedParam } from "../../dsl/params.js"
import { type FromRun, sourceNameOf } from "../experiment/warm-start/from-run.js"
import { type WarmStart, type WarmStartTag, warmStartTag } from "../experiment/warm-start/index.js"
import type { TensorArrays } from "./checkpoint.js"

/** How a warm start makes the student's first weights from its source's: arrays under the student's parameter names. */
type WarmStartCompute<W> = (init: W, table: ReadonlyArray<NamedParam>, source: TensorArrays) => TensorArrays

const fromRun: WarmStartCompute<FromRun> = (init, table, source) =>
  Object.fromEntries(
    table.flatMap((p) => {
      const a = source[sourceNameOf(p.name, init.blocks)]
      return a === undefined ? [] : [[p.name, a]]
    }),
  )

/** By the tags of the descriptions (src/experiment/warm-start/index.ts): a described warm start without one does not compile. */
const computations: { readonly [K in WarmStartTag]: WarmStartCompute<WarmStart> } = {
  "from-run": fromRun,
}

export const warmStartArrays = (init: WarmStart, table: ReadonlyArray<NamedParam>, source: TensorArrays): TensorArrays => computations[warmStartTag(init)](init, table, source)
