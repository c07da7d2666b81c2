/**
 * `npm run data -- download [--extra] [--json-shards] [--cache DIR] [--base-url URL]`
 *   fetches the official TinyStories files into `<cache>/tinystories/` (resumable).
 * `npm run data -- prepare --vocab N [--extra] [--dir DIR] [--cache DIR]`
 *   trains (or loads) the tokenizer and tokenises both splits into the cache.
 */
import { join } from "node:path"
import { parseArgs } from "node:util"
import { Effect } from "effect"
import { downloadFile, HF_DATASET_URL, OFFICIAL_FILES } from "../data/download.js"
import { downloadDir } from "../data/paths.js"
import { prepareData } from "../data/prepare.js"
import { runMain, UsageError } from "./boundary.js"

const usage = `usage:
  npm run data -- download [--extra] [--json-shards] [--cache DIR] [--base-url URL]
  npm run data -- prepare --vocab N [--extra] [--dir DIR] [--cache DIR]`

const options = {
  extra: { type: "boolean", default: false },
  "json-shards": { type: "boolean", default: false },
  cache: { type: "string" },
  dir: { type: "string" },
  "base-url": { type: "string", default: HF_DATASET_URL },
  vocab: { type: "string" },
} as const

type Values = ReturnType<typeof parseArgs<{ options: typeof options; allowPositionals: true }>>["values"]

const download = (values: Values) =>
  Effect.gen(function* () {
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

/** The byte-level BPE needs the 256 bytes and the end-of-text token. */
const MIN_VOCAB = 257

const prepare = (values: Values) =>
  Effect.gen(function* () {
    const vocabSize = Number(values.vocab)
    if (values.vocab === undefined || !Number.isSafeInteger(vocabSize) || vocabSize < MIN_VOCAB)
      return yield* new UsageError({ message: `--vocab must be an integer ≥ ${MIN_VOCAB}${values.vocab === undefined ? "" : `, got ${values.vocab}`}\n${usage}` })
    const data = yield* prepareData({
      tokenizer: { vocabSize },
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

runMain((argv) =>
  Effect.gen(function* () {
    const { positionals, values } = yield* Effect.try({
      try: () => parseArgs({ args: [...argv], allowPositionals: true, options }),
      catch: (e) => new UsageError({ message: `${(e as Error).message}\n${usage}` }),
    })
    const [subcommand, ...rest] = positionals
    if (rest.length > 0) return yield* new UsageError({ message: `unexpected argument ${JSON.stringify(rest[0])}\n${usage}` })
    if (subcommand === "download") return yield* download(values)
    if (subcommand === "prepare") return yield* prepare(values)
    return yield* new UsageError({ message: `${subcommand === undefined ? "no command given" : `unknown command ${JSON.stringify(subcommand)}`}\n${usage}` })
  }),
)
