import { blocksOf, type DecoderSpec, formatPath, type Layer, policyModule } from "../../dsl/index.js"

/**
 * The one place exporters read a spec's structure: the decoder as a list of pre-norm blocks,
 * x + attention(norm(x)) then x + ffn(norm(x)), the only arrangement GPT-2, Llama and run.c
 * compute. Each block comes with its parts, their checkpoint names and their spec paths (for
 * messages), so exporters check and convert block by block.
 */
type Of<Op extends Layer["op"]> = Extract<Layer, { op: Op }>
export type AttentionNode = Of<"attention">
export type FfnNode = Of<"ffn">
export type NormNode = Of<"norm">

export interface Part<N> {
  readonly node: N
  /** Checkpoint name prefix of the node's parameters, e.g. `blocks.0.0.attention`. */
  readonly name: string
  /** Where the node is in the spec, formatted as decodeSpec does. */
  readonly at: string
}

export interface PreNormBlock {
  readonly attentionNorm: Part<NormNode>
  readonly attention: Part<AttentionNode>
  readonly ffnNorm: Part<NormNode>
  readonly ffn: Part<FfnNode>
}

export type Blocks = { readonly ok: true; readonly blocks: ReadonlyArray<PreNormBlock> } | { readonly ok: false; readonly problem: string }

export const preNormBlocks = (spec: DecoderSpec): Blocks => {
  const blocks: PreNormBlock[] = []
  // These formats run every block on every position: a policy whose inference does otherwise would be exported as a different model.
  const policy = spec.layers.policy
  const departs = policy && policyModule(policy).departs(policy, blocksOf(spec.layers).length)
  if (policy && departs !== undefined) {
    return {
      ok: false,
      problem: `at ${formatPath(["layers", "policy"])}: ${policyModule(policy).label(policy)}: ${departs}; these formats run every block on every position (--drop-policy exports the model without its policy, a different model)`,
    }
  }
  const pair = <B extends Layer["op"]>(layer: Layer | undefined, op: B): [NormNode, Of<B>] | undefined =>
    layer?.op === "residual" && layer.body.length === 2 && layer.body[0]!.op === "norm" && layer.body[1]!.op === op
      ? [layer.body[0] as NormNode, layer.body[1] as Of<B>]
      : undefined
  for (const [i, block] of blocksOf(spec.layers).entries()) {
    const path = spec.layers.op === "depth" ? ["layers", "block", "layers"] : ["layers", "blocks", i, "layers"]
    const [first, second, ...rest] = block.layers
    const attention = pair(first, "attention")
    const ffn = pair(second, "ffn")
    if (attention === undefined || ffn === undefined || rest.length > 0) {
      return {
        ok: false,
        problem: `at ${formatPath(path)}: the block is not the pre-norm block [residual([norm, attention]), residual([norm, ffn])] that these formats compute`,
      }
    }
    const at = (r: number, j: number) => formatPath([...path, r, "body", j])
    blocks.push({
      attentionNorm: { node: attention[0], name: `blocks.${i}.0.norm`, at: at(0, 0) },
      attention: { node: attention[1], name: `blocks.${i}.0.attention`, at: at(0, 1) },
      ffnNorm: { node: ffn[0], name: `blocks.${i}.1.norm`, at: at(1, 0) },
      ffn: { node: ffn[1], name: `blocks.${i}.1.ffn`, at: at(1, 1) },
    })
  }
  return { ok: true, blocks }
}

/**
 * Options of the lab's models that none of these formats computes (`target` names the format's
 * model): written anyway, the file would hold a model that silently computes something else.
 */
export const unsupportedOptions = (spec: DecoderSpec, blocks: ReadonlyArray<PreNormBlock>, target: string): string[] => [
  ...(spec.softcap === undefined ? [] : [`at ${formatPath(["softcap"])}: logit soft-cap ${spec.softcap}; ${target} does not cap the logits`]),
  ...blocks.filter((b) => b.attention.node.qkNorm).map((b) => `at ${b.attention.at}: qkNorm; ${target} does not normalise queries and keys`),
]
