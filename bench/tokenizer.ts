/**
 * `npm run bench -- tokenizer [--dir DIR]`: JSON lines with the tokenizer's figures —
 * training time for 4096 on train.txt, encoding throughput (ours vs gpt-tokenizer's GPT-2
 * and cl100k encoders vs @huggingface/tokenizers on our tokenizer.json), and bytes per token
 * on valid.txt for 512…8192 next to the Hugging Face Rust trainer's figures.
 */
import { parseArgs } from "node:util"
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers"
import { Effect } from "effect"
import { encode as encodeCl100k } from "gpt-tokenizer/encoding/cl100k_base"
import { encode as encodeGpt2 } from "gpt-tokenizer/encoding/r50k_base"
import { resolveDataset } from "../src/data/dataset.js"
import { readStories } from "../src/data/stories.js"
import { Tokenizer } from "../src/tokenizer/tokenizer.js"
import { trainBpe } from "../src/tokenizer/trainer.js"

/** Bytes/token on valid.txt of tokenizers trained on train.txt by Hugging Face's Rust BpeTrainer (issue 3). */
const HF_BYTES_PER_TOKEN: Record<number, number> = { 512: 2.67, 1024: 3.25, 2048: 3.73, 4096: 4.04, 8192: 4.19 }

const print = (record: Record<string, unknown>): void => console.log(JSON.stringify(record))

/** Tokens/s of `encode` on `text`: a cold pass on a fresh encoder, then the best of two warm passes. */
const throughput = (encode: (text: string) => number, text: string): { cold: number; warm: number } => {
  let t0 = performance.now()
  const n = encode(text)
  const cold = n / ((performance.now() - t0) / 1000)
  let warm = 0
  for (let r = 0; r < 2; r++) {
    t0 = performance.now()
    encode(text)
    warm = Math.max(warm, n / ((performance.now() - t0) / 1000))
  }
  return { cold, warm }
}

export const main = async (argv: string[]): Promise<void> => {
  const { values } = parseArgs({ args: argv, options: { dir: { type: "string" } } })
  const dataset = await Effect.runPromise(resolveDataset(values.dir !== undefined ? { dir: values.dir } : {}))
  const train = await Effect.runPromise(readStories(dataset.train[0]!))
  const valid = await Effect.runPromise(readStories(dataset.valid))
  const trainBytes = train.reduce((s, x) => s + Buffer.byteLength(x), 0)

  let t0 = performance.now()
  const tok4096 = trainBpe(train, { vocabSize: 4096 })
  print({
    bench: "train",
    vocabSize: 4096,
    actualVocabSize: tok4096.vocabSize,
    file: dataset.train[0],
    textBytes: trainBytes,
    seconds: Number(((performance.now() - t0) / 1000).toFixed(3)),
    target: "< 30 s",
  })

  const text = train.join("\n<|endoftext|>\n")
  const json = tok4096.toJSON()
  const eot = new Set(["<|endoftext|>"])
  const hf = new HfTokenizer(JSON.parse(json), {})
  const encoders: Record<string, () => (s: string) => number> = {
    ours: () => {
      const t = Tokenizer.fromJSON(json)
      return (s) => t.encode(s).length
    },
    "gpt-tokenizer r50k (GPT-2)": () => (s) => encodeGpt2(s, { allowedSpecial: eot }).length,
    "gpt-tokenizer cl100k": () => (s) => encodeCl100k(s, { allowedSpecial: eot }).length,
    "@huggingface/tokenizers (our tokenizer.json)": () => (s) => hf.encode(s).ids.length,
  }
  for (const [name, make] of Object.entries(encoders)) {
    const encode = make()
    const { cold, warm } = throughput(encode, text)
    print({
      bench: "encode",
      encoder: name,
      textBytes: Buffer.byteLength(text),
      tokens: encode(text),
      coldTokensPerSec: Math.round(cold),
      warmTokensPerSec: Math.round(warm),
    })
  }

  const validBytes = valid.reduce((s, x) => s + Buffer.byteLength(x), 0)
  for (const vocabSize of [512, 1024, 2048, 4096, 8192]) {
    t0 = performance.now()
    const tok = trainBpe(train, { vocabSize })
    const seconds = (performance.now() - t0) / 1000
    // The same measure as prepareData: story bytes over the stream with one <|endoftext|> per story.
    const tokens = valid.reduce((s, x) => s + tok.encode(x).length + 1, 0)
    const ours = validBytes / tokens
    const ref = HF_BYTES_PER_TOKEN[vocabSize]!
    print({
      bench: "bytesPerToken",
      vocabSize,
      actualVocabSize: tok.vocabSize,
      trainSeconds: Number(seconds.toFixed(3)),
      ours: Number(ours.toFixed(4)),
      huggingFace: ref,
      relativeDiff: Number(((ours - ref) / ref).toFixed(4)),
    })
  }
}
