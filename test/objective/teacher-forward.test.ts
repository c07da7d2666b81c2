import * as tf from "@tensorflow/tfjs"
import { beforeAll, describe, expect, it } from "vitest"
import { attention, block, decoder, depth, ffn, stack } from "../../dsl/index.js"
import { posenc, posencKinds, type PosencOptions, type PosencSpec, type PosencTag } from "../../dsl/kinds/posenc/index.js"
import { compile, type ParamValues } from "../../src/model/index.js"

/**
 * The teacher's forward pass frees each block's tensors when the block is done (`blockwise`):
 * the same logits bit for bit as the ordinary pass, for every position scheme and for a stack
 * of different attention kinds, with only block outputs left behind.
 */
beforeAll(async () => {
  await tf.setBackend("cpu")
})

const required: { readonly [K in PosencTag]?: PosencOptions<K> } = { t5: [{ heads: 2 }] }
const schemeSpec = (kind: PosencTag): PosencSpec => (posenc as (k: PosencTag, ...o: unknown[]) => PosencSpec)(kind, ...(required[kind] ?? []))
const gelu = block({ attention: attention("full", { heads: 2 }), ffn: ffn("gelu") })
const models = [
  ...(Object.keys(posencKinds) as PosencTag[]).map((kind) => [kind, decoder({ vocab: 23, width: 8, context: 12, posenc: schemeSpec(kind), layers: depth(3, gelu) })] as const),
  [
    "stack",
    decoder({
      vocab: 23,
      width: 8,
      context: 12,
      layers: stack([block({ attention: attention("sliding-window", { heads: 2, window: 3 }), ffn: ffn("swiglu") }), gelu, block({ attention: attention("linformer-causal", { heads: 2, k: 4, block: 4 }), ffn: ffn("relu") })]),
    }),
  ] as const,
]

describe("blockwise forward", () => {
  it.each(models)("%s: equal logits, intermediates freed block by block", (_name, spec) => {
    const m = compile(spec)
    const params: ParamValues = m.init(3)
    const tokens = tf.tensor2d([[1, 5, 7, 2, 9, 11, 3, 0, 22, 4], [6, 6, 1, 0, 2, 8, 13, 21, 5, 5]], [2, 10], "int32")
    const before = tf.memory().numTensors
    const run = (blockwise: boolean) =>
      tf.tidy(() => {
        const start = tf.memory().numTensors
        const logits = m.apply(params, tokens, { blockwise })
        return { values: logits.dataSync().slice(), live: tf.memory().numTensors - start }
      })
    const plain = run(false)
    const freed = run(true)
    expect(Array.from(freed.values)).toEqual(Array.from(plain.values))
    // Left: each block's output and what the embedding, final norm and head made, far fewer
    // than the ordinary pass's tensors, which grow with every layer.
    expect(freed.live).toBeLessThan(plain.live / 3)
    expect(tf.memory().numTensors).toBe(before)
    tf.dispose([tokens, ...Object.values(params)])
  })
})
