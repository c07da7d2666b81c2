import { attention, block, decoder, depth, ffn, type Layers } from "../../dsl/index.js"
import type { RunSpec } from "../../src/experiment/define.js"
import type { PosencSpec } from "../../dsl/kinds/posenc/index.js"
import { tokenRunData } from "../../src/orchestration/data.js"
import { Rng } from "../../src/random/rng.js"
import { constant, cosine } from "../../src/schedule/index.js"
import type { RunData } from "../../src/train/run-data.js"

/** A character-level tokenizer over a 16-letter alphabet plus an end-of-text id. */
const alphabet = "abcdefghijklmno "
export const charTokenizer = {
  encode: (s: string) => Array.from(s, (c) => alphabet.indexOf(c)),
  decode: (ids: ArrayLike<number>) => Array.from(ids as number[], (i) => alphabet[i] ?? "").join(""),
  vocabSize: 17,
  eotId: 16,
  hash: "char16",
  name: "characters (test)",
  json: () => JSON.stringify({ alphabet }),
}

/** A corpus with structure to learn: words drawn from a small seeded lexicon. */
const corpus = (seed: number, words: number): Uint16Array => {
  const rng = Rng.fromSeed(seed)
  const lexicon = ["abc", "dei", "fog", "hijk", "lmn", "ocean", "banjo", "da"]
  const ids: number[] = []
  for (let i = 0; i < words; i++) {
    for (const c of lexicon[rng.nextInt(lexicon.length)]!) ids.push(alphabet.indexOf(c))
    ids.push(i % 12 === 11 ? 16 : alphabet.indexOf(" "))
  }
  return Uint16Array.from(ids)
}

export const syntheticData = (): RunData => tokenRunData(charTokenizer, corpus(1, 3000), corpus(2, 400), { train: 1, valid: 1 }, "synthetic-1-2")

export const tinyRun = (o: { steps: number; lr?: number; every?: number; evalEvery?: number; dropout?: number; seed?: number; posenc?: PosencSpec; layers?: Layers }): RunSpec => ({
  format: 1,
  experiment: "test",
  variant: "base",
  seed: o.seed ?? 1,
  model: decoder({
    vocab: 17,
    width: 16,
    context: 8,
    dropout: o.dropout ?? 0,
    ...(o.posenc ? { posenc: o.posenc } : {}),
    layers: o.layers ?? depth(1, block({ attention: attention("full", { heads: 2, dropout: o.dropout ?? 0 }), ffn: ffn("gelu", { dropout: o.dropout ?? 0 }) })),
  }),
  training: {
    data: { source: "tinystories", tokenizer: { bpe: 512 }, extra: false },
    budget: { steps: o.steps },
    batch: 4,
    accumulate: 2,
    optimizer: {
      kind: "adamw",
      lr: o.lr !== undefined ? constant(o.lr) : cosine({ peak: 3e-3, warmup: 2, floor: 3e-4 }),
      weightDecay: 0.1,
      beta1: 0.9,
      beta2: 0.95,
      eps: 1e-8,
      clip: 1,
      decayAll: false,
    },
    eval: { every: o.evalEvery ?? 1000, tokens: 256, lengths: [16] },
    checkpoint: { every: o.every ?? 1000 },
    sample: { prompt: "abc", tokens: 8, temperature: 0.8, topK: 5, topP: 0.95 },
  },
})

/** Data whose training streams throw after `n` batches each: a crash in the middle of a run. */
export const crashingAfter = (data: RunData, n: number): RunData => ({
  ...data,
  trainStream: (b, c, s, cursor) => {
    const inner = data.trainStream(b, c, s, cursor)
    let served = 0
    return {
      next: () => {
        if (served++ === n) throw new Error("simulated crash")
        return inner.next()
      },
      cursor: inner.cursor,
    }
  },
})
