import { isRouted, type MixtureOfDepths } from "../../dsl/kinds/depth/mixture-of-depths.js"
import { blocksOf, type DecoderSpec } from "../../dsl/nodes.js"
import { blockChildNames, paramName } from "../../dsl/params.js"
import { emitLayer } from "./layers.js"
import { OP, type ProgramBuilder } from "./program.js"

/**
 * Mixture-of-depths as a decoding program, computing what src/depth/mixture-of-depths.ts does
 * at inference. A routed block's router and predictor run on every row; a route op gathers
 * the rows whose predictor says yes, the block runs on them alone as one shorter sequence,
 * its attention (of any kind, under any position scheme) at its own held length, as tfjs runs
 * it: positions, score biases, masks and windows count the routed positions alone. A combine
 * op adds the block's change times sigmoid(router score) back at their rows. A row the
 * predictor skips costs nothing else.
 */

/** The blocks from register x, routed ones through their predictors; returns the last block's output register. */
export const emitMixtureOfDepths = (b: ProgramBuilder, spec: DecoderSpec, policy: MixtureOfDepths, x: number): number => {
  blocksOf(spec.layers).forEach((block, i) => {
    const names = blockChildNames(block.layers)
    const run = (h: number) => block.layers.reduce((y, layer, j) => emitLayer(b, layer, `blocks.${i}.${names[j]}`, y, { width: spec.width, index: i, posenc: spec.posenc }), h)
    if (!isRouted(policy, i)) {
      x = run(x)
      return
    }
    const param = (name: string, transpose = false) => b.param(paramName(`blocks.${i}`, name), transpose).index
    const gate = b.register(1)
    const hidden = b.register(policy.predictor)
    b.op({ code: OP.linear, x, targets: [{ w: param("router.weight", true), bias: -1, y: gate }, { w: param("predictor.w1", true), bias: param("predictor.b1"), y: hidden }] })
    const relu = b.register(policy.predictor)
    b.op({ code: OP.act, x: hidden, y: relu, act: 3, alpha: 0 })
    const predicted = b.register(1)
    b.op({ code: OP.linear, x: relu, targets: [{ w: param("predictor.w2", true), bias: param("predictor.b2"), y: predicted }] })
    const routed = b.register(spec.width)
    b.op({ code: OP.route, x: predicted, b: x, y: routed, block: i })
    const first = b.slots.length
    b.compact = true
    const out = run(routed)
    b.compact = false
    for (let s = first; s < b.slots.length; s++) b.slots[s] = { ...b.slots[s]!, routed: i }
    const y = b.register(spec.width)
    b.op({ code: OP.combine, x: out, b: x, g: gate, y })
    x = y
  })
  return x
}
