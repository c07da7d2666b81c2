import type { DepthCosts } from "../../dsl/costs.js"
import type { EarlyExit } from "../../dsl/kinds/depth/early-exit.js"
import { blocksOf, type DecoderSpec } from "../../dsl/nodes.js"
import { blockChildNames, paramName } from "../../dsl/params.js"
import { emitLayer, normFields } from "./layers.js"
import { MEASURE, OP, type ProgramBuilder } from "./program.js"

/**
 * Early exit as a decoding program, computing what src/depth/early-exit.ts `infer` does.
 * Each block runs its prefix (through its last attention) on every row, so that the cache
 * gets every position's keys and values (CALM's state propagation); the rows still running
 * are gathered and run the rest of the block, compact; a scatter puts their new state back
 * (the rows that left keep theirs); an exit op measures the running rows' confidence, writes
 * the leaving rows' logits into the result and shrinks the running set, which the native
 * program keeps. At the last block every row still running leaves with the LM head.
 */

/** The blocks, exits and heads from register x; returns the logits register. */
export const emitEarlyExit = (b: ProgramBuilder, spec: DecoderSpec, policy: EarlyExit, costs: DepthCosts, x: number): number => {
  const blocks = blocksOf(spec.layers)
  const last = blocks.length - 1
  const context = (index: number) => ({ width: spec.width, index, posenc: spec.posenc })
  // The tied head multiplies by the embedding [vocab, width], already one row per output.
  const lmHead = spec.tied ? b.param("embed.tokens") : b.param("head.weight", true)
  const finalNorm = normFields(b, spec.norm, "norm")
  const logits = b.register(spec.vocab)
  blocks.forEach((block, i) => {
    const names = blockChildNames(block.layers)
    const prefixLayers = costs.blocks[i]!.prefixLayers
    const emit = (h: number, j: number) => emitLayer(b, block.layers[j]!, `blocks.${i}.${names[j]}`, h, context(i))
    const mid = block.layers.slice(0, prefixLayers).reduce((h, _, j) => emit(h, j), x)
    const gathered = b.register(spec.width)
    b.op({ code: OP.gather, x: mid, y: gathered })
    b.compact = true
    const after = block.layers.slice(prefixLayers).reduce((h, _, j) => emit(h, prefixLayers + j), gathered)
    b.compact = false
    const y = b.register(spec.width)
    b.op({ code: OP.scatter, x: after, b: x, y })
    const head = policy.heads === "per-block" && i < last ? b.param(paramName(`blocks.${i}`, "exit.weight"), true) : lmHead
    const measure = i === last ? MEASURE.last : MEASURE[policy.measure]
    b.op({ code: OP.exit, x: after, b: x, block: i, measure, threshold: policy.threshold, targets: [{ w: head.index, bias: -1, y: logits }], ...finalNorm, ...(spec.softcap === undefined ? {} : { alpha: spec.softcap }) })
    x = y
  })
  return logits
}
