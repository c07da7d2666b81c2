import { Schema } from "effect"
import { formatPath } from "../../../dsl/decode.js"
import type { DecoderSpec } from "../../../dsl/nodes.js"
import type { SpecOf } from "../../../dsl/registry.js"
import type { WarmStartDescription } from "./description.js"
import { fromRunStart } from "./from-run.js"

/**
 * The warm starts, by tag: where a run's first weights come from when not from its seed.
 * Adding one is its description here (one module, one line) and its computation in
 * src/train/warm-starts.ts, whose record is typed by these tags.
 */
export const warmStarts = {
  "from-run": fromRunStart,
} as const

export type WarmStart = SpecOf<typeof warmStarts>
export type WarmStartTag = keyof typeof warmStarts

export const WarmStartSchema = Schema.Union(Object.values(warmStarts).map((w) => w.schema) as [typeof fromRunStart.schema])

/** A warm start's tag; `from-run` may go unsaid, as it did before there were others. */
export const warmStartTag = (init: WarmStart): WarmStartTag => init.kind ?? "from-run"

export const warmStartModule = (init: WarmStart) => warmStarts[warmStartTag(init)] as WarmStartDescription<WarmStart>

export const fromRun = fromRunStart.make

/** Problems of a warm start against the student's model, at paths under `prefix`. */
export const warmStartProblems = (init: WarmStart, student: DecoderSpec, prefix: ReadonlyArray<string | number>): string[] =>
  warmStartModule(init).check(init, student).map((i) => `at ${formatPath([...prefix, ...i.path])}: ${i.message}`)

/** One line for listings: "from base, blocks 0, 2". */
export const describeWarmStart = (init: WarmStart): string => warmStartModule(init).label(init)
