/**
 * `npm run data -- download [--extra] [--json-shards] [--cache DIR] [--base-url URL]`
 *   fetches the official TinyStories files into `<cache>/tinystories/` (resumable).
 * `npm run data -- prepare --vocab N [--extra] [--dir DIR] [--cache DIR]`
 *   trains (or loads) the tokenizer and tokenises both splits into the cache.
 */
import { join } from "node:path"
import { parseArgs } from "node:util"
import { NodeServices } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { downloadFile, HF_DATASET_URL, OFFICIAL_FILES } from "../data/download.js"
import { downloadDir } from "../data/paths.js"
import { prepareData } from "../data/prepare.js"
import { ProgressSink } from "../report/progress.js"

const usage = `usage:
  npm run data -- download [--extra] [--json-shards] [--cache DIR] [--base-url URL]
  npm run data -- prepare --vocab N [--extra] [--dir DIR] [--cache DIR]`

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    extra: { type: "boolean", default: false },
    "json-shards": { type: "boolean", default: false },
    cache: { type: "string" },
    dir: { type: "string" },
    "base-url": { type: "string", default: HF_DATASET_URL },
    vocab: { type: "string" },
  },
})

const download = Effect.gen(function* () {
  const names = [
    OFFICIAL_FILES.train,
    OFFICIAL_FILES.valid,
    ...(values.extra ? [OFFICIAL_FILES.trainV2, OFFICIAL_FILES.validV2] : []),
    ...(values["json-shards"] ? [OFFICIAL_FILES.jsonShards] : []),
  ]
  const dir = downloadDir(values.cache)
  for (const name of names) {
    const result = yield* downloadFile({ url: `${values["base-url"]}/${name}`, dest: join(dir, name), progress: true })
    console.log(
      JSON.stringify({
        file: result.path,
        bytes: result.bytes,
        sha256: result.sha256,
        checked: result.checked,
        skipped: result.skipped,
      }),
    )
  }
})

const prepare = Effect.gen(function* () {
  const vocabSize = Number(values.vocab)
  if (values.vocab === undefined || !Number.isInteger(vocabSize)) return yield* Effect.fail(new Error(`--vocab N is required\n${usage}`))
  const data = yield* prepareData({
    vocabSize,
    extra: values.extra ?? false,
    ...(values.dir !== undefined ? { dir: values.dir } : {}),
    ...(values.cache !== undefined ? { cacheDir: values.cache } : {}),
  })
  const summary = (s: typeof data.train) => ({
    tokens: s.tokens.length,
    stories: s.stories,
    textBytes: s.textBytes,
    bytesPerToken: Number(s.bytesPerToken.toFixed(4)),
    cache: s.cachePath,
    cached: s.cached,
  })
  console.log(
    JSON.stringify({
      data: data.dataset,
      tokenizer: { path: data.tokenizerPath, vocabSize: data.tokenizer.vocabSize, eotId: data.tokenizer.eotId, hash: data.tokenizer.hash },
      train: summary(data.train),
      valid: summary(data.valid),
    }),
  )
})

const command = positionals[0] === "download" ? download : positionals[0] === "prepare" ? prepare : undefined
if (command === undefined) {
  console.error(usage)
  process.exit(2)
}
const exit = await Effect.runPromiseExit(command.pipe(Effect.provide(Layer.merge(NodeServices.layer, ProgressSink.stderr))))
if (exit._tag === "Failure") {
  const error = exit.cause.reasons.find((r) => r._tag === "Fail")
  console.error(error !== undefined && error._tag === "Fail" ? (error.error as Error).message : String(exit.cause))
  process.exit(1)
}
