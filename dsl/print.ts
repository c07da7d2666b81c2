import { ffnHidden } from "./ffn.js"
import type { Dims } from "./kind.js"
import { activationModule } from "./kinds/activation/index.js"
import { attentionModule } from "./kinds/attention/index.js"
import { policyModule } from "./kinds/depth/index.js"
import { normModule } from "./kinds/norm/index.js"
import { posencModule } from "./kinds/posenc/index.js"
import { type BlockSpec, type DecoderSpec, dimsOf, type Layer } from "./nodes.js"
import { blockRuns, layerOwnParams, paramCounts, policyParams, posencParamsCount, size } from "./params.js"

/** Compact counts: 4194304 → "4.19M". */
export const formatCount = (n: number): string =>
  n >= 1e9 ? `${(n / 1e9).toPrecision(3)}B` : n >= 1e6 ? `${(n / 1e6).toPrecision(3)}M` : n >= 1e4 ? `${(n / 1e3).toPrecision(3)}k` : `${n}`

interface Row {
  readonly label: string
  readonly params: number
  readonly children: ReadonlyArray<Row>
}

/** A node's own parameters; model-wide ones ("/" names, shared by every layer) are shown once, under the stack. */
const declsSize = (decls: Record<string, { shape: readonly number[] }>): number =>
  Object.entries(decls)
    .filter(([name]) => !name.startsWith("/"))
    .reduce((s, [, d]) => s + d.shape.reduce((a, b) => a * b, 1), 0)

const layerRow = (layer: Layer, dims: Dims): Row => {
  switch (layer.op) {
    case "attention":
      return { label: `attention ${attentionModule(layer).label(layer)}`, params: declsSize(layerOwnParams(layer, dims)), children: [] }
    case "ffn": {
      const act = activationModule(layer.activation).label(layer.activation)
      return { label: `ffn ${act} ${dims.width}→${ffnHidden(layer, dims.width)}→${dims.width}`, params: declsSize(layerOwnParams(layer, dims)), children: [] }
    }
    case "norm":
      return { label: `norm ${normModule(layer).label(layer)}`, params: declsSize(layerOwnParams(layer, dims)), children: [] }
    case "residual": {
      const children = layer.body.map((l) => layerRow(l, dims))
      const label = layer.dropout > 0 ? `residual (dropout ${layer.dropout})` : "residual"
      return { label, params: children.reduce((s, c) => s + c.params, 0), children }
    }
  }
}

/** Model-wide parameters of these blocks, each counted once. */
const sharedSize = (blocks: ReadonlyArray<BlockSpec>, dims: Dims): number => {
  const decls = new Map(
    blocks
      .flatMap((b) => b.layers)
      .flatMap(function own(l: Layer): Array<[string, { shape: readonly number[] }]> {
        return l.op === "residual" ? l.body.flatMap(own) : Object.entries(layerOwnParams(l, dims))
      })
      .filter(([name]) => name.startsWith("/")),
  )
  return [...decls.values()].reduce((s, d) => s + d.shape.reduce((a, b) => a * b, 1), 0)
}

/** The layers as rows: one per run of equal blocks (×n), the model-wide parameters once. */
const layersRow = (spec: DecoderSpec, dims: Dims): Row => {
  const runs = blockRuns(spec.layers).map((run) => {
    const children = run.block.layers.map((l) => layerRow(l, dims))
    return { run, children, each: children.reduce((s, c) => s + c.params, 0) }
  })
  const shared = sharedSize(runs.map((r) => r.run.block), dims)
  const sharedRow = shared > 0 ? [{ label: "shared by all blocks", params: shared, children: [] }] : []
  const policy = spec.layers.policy
  const own = policyParams(spec).reduce((s, p) => s + size(p.decl), 0)
  const policyRow = policy ? [{ label: `policy ${policyModule(policy).label(policy)}`, params: own, children: [] }] : []
  const total = runs.reduce((s, r) => s + r.each * r.run.count, 0) + shared + own
  if (spec.layers.op === "depth") {
    const [{ each, children }] = runs as [(typeof runs)[number]]
    return { label: `depth ×${spec.layers.n}`, params: total, children: [{ label: `block (${formatCount(each)} each)`, params: each, children }, ...sharedRow, ...policyRow] }
  }
  const blockRows = runs.map(({ run, children, each }) =>
    run.count === 1
      ? { label: `block ${run.from}`, params: each, children }
      : { label: `blocks ${run.from}–${run.from + run.count - 1} ×${run.count} (${formatCount(each)} each)`, params: each * run.count, children },
  )
  return { label: `stack of ${spec.layers.blocks.length} blocks`, params: total, children: [...blockRows, ...sharedRow, ...policyRow] }
}

const rows = (spec: DecoderSpec): Row => {
  const dims = dimsOf(spec)
  const counts = paramCounts(spec)
  return {
    label: `decoder vocab=${spec.vocab} width=${spec.width} context=${spec.context}${spec.dropout > 0 ? ` dropout=${spec.dropout}` : ""}${spec.checkpoint ? ` checkpoint=${spec.checkpoint}` : ""}${spec.softcap === undefined ? "" : ` softcap=${spec.softcap}`}`,
    params: counts.total,
    children: [
      { label: `embed ${spec.vocab}×${spec.width}`, params: spec.vocab * spec.width, children: [] },
      { label: `posenc ${posencModule(spec.posenc).label(spec.posenc)}`, params: posencParamsCount(spec), children: [] },
      layersRow(spec, dims),
      { label: `norm ${normModule(spec.norm).label(spec.norm)}`, params: declsSize(normModule(spec.norm).params(spec.norm, dims)), children: [] },
      { label: spec.tied ? "head (tied to embed)" : `head ${spec.width}×${spec.vocab}`, params: spec.tied ? 0 : spec.width * spec.vocab, children: [] },
    ],
  }
}

/** The spec as an indented tree with the parameter count of every node. */
export const printSpec = (spec: DecoderSpec): string => {
  const lines: Array<[string, string]> = []
  const walk = (row: Row, indent: string, last: boolean, root: boolean): void => {
    lines.push([`${root ? "" : indent + (last ? "└─ " : "├─ ")}${row.label}`, formatCount(row.params)])
    const next = root ? "" : indent + (last ? "   " : "│  ")
    row.children.forEach((c, i) => walk(c, next, i === row.children.length - 1, false))
  }
  walk(rows(spec), "", true, true)
  const counts = paramCounts(spec)
  lines.push(["total / non-embedding", `${formatCount(counts.total)} / ${formatCount(counts.nonEmbedding)}`])
  const width = Math.max(...lines.map(([l]) => [...l].length))
  return lines.map(([l, n]) => `${l}${" ".repeat(width - [...l].length + 2)}${n.padStart(8)}`).join("\n")
}
