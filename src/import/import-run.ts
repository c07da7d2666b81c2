import { createHash } from "node:crypto"
import { Data, Effect, FileSystem, Path } from "effect"
import { type DecoderSpec, hashSpec, paramCounts, paramTable } from "../../dsl/index.js"
import { ioReason } from "../errors/io-error.js"
import { fsyncDirectory, writeFileAtomic } from "../io/atomic-write.js"
import { makeDirectory } from "../io/make-directory.js"
import { runsFolder } from "../io/paths.js"
import { experiment, type RunSpec, tinystories } from "../experiment/define.js"
import { IMPORTS, isInside, nameProblem } from "../experiment/names.js"
import { adamw } from "../experiment/optimizer/spec.js"
import { constant } from "../schedule/index.js"
import type { Weights } from "../export/weights.js"
import { readTokenizer } from "../tokenizer/registry.js"
import { SentencePieceTokenizer } from "../tokenizer/sentencepiece.js"
import type { TextTokenizer } from "../tokenizer/text-tokenizer.js"
import { saveCheckpoint } from "../train/checkpoint.js"
import { trainingIdentity } from "../train/identity.js"
import { decodeSafetensors } from "../train/safetensors.js"
import { fromHuggingFace } from "./hf.js"
import { fromLlama2c } from "./llama2c.js"

/**
 * A model trained elsewhere (llama2.c, Hugging Face) made a finished run directory of this lab: spec.json (the model in
 * the lab's language; no training: a budget of 0 steps), tokenizer.json, the checkpoint and a
 * summary.json that records where it came from (file, sha256, format, whether it was
 * dequantised). Evaluation, generation, derivation, distillation (as a teacher) and pruning
 * (as a source) read it like any run. The run trains on TinyStories with its own tokenizer
 * (`tokenizer: { run: <its directory> }`), so a student declared with that data shares it.
 */
export class ImportError extends Data.TaggedError("ImportError")<{ readonly problem: string }> {
  override get message(): string {
    return this.problem
  }
}

export interface ImportResult {
  readonly out: string
  readonly run: RunSpec
  readonly summary: Readonly<Record<string, unknown>>
}

const sha256 = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex")

/** `file`'s name without its extension: stories15M.bin → stories15M. */
const stem = (path: Path.Path, file: string): string => path.basename(file, path.extname(file))

/** A model read from another runtime's files, ready to be written as a run. */
interface Imported {
  readonly model: DecoderSpec
  readonly weights: Weights
  readonly tokenizer: TextTokenizer
  /** The run's variant: what it was imported from. */
  readonly variant: string
  /** Where it came from, recorded in summary.json and the checkpoint. */
  readonly source: Readonly<Record<string, unknown>>
}

/** `out`, or runs/imports/<name>, checked to be new or empty before anything is read. */
export const target = (name: string, out: string | undefined) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const dir = path.resolve(out ?? path.join(runsFolder(), IMPORTS, name))
    const badName = nameProblem(path.basename(dir))
    if (badName !== undefined) return yield* new ImportError({ problem: `${dir}: the run's directory names it: ${badName} (choose another --out)` })
    // A finished run is never overwritten: the output must be new or empty.
    const existing = yield* fs.readDirectory(dir).pipe(Effect.orElseSucceed((): string[] => []))
    if (existing.length > 0) return yield* new ImportError({ problem: `${dir} is not empty; an import never overwrites a run: choose another --out` })
    return dir
  })

const readBytes = (file: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    return yield* fs.readFile(file).pipe(Effect.mapError((e) => new ImportError({ problem: `cannot read ${file}: ${ioReason(e)}` })))
  })

/** Writes the run whole into a sibling, then renames it into place: no reader sees half a run. */
const writeRun = (out: string, imported: Imported) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const recorded = isInside(runsFolder(), out) ? path.relative(runsFolder(), out) : out
    const base = experiment({
      description: `imported: ${imported.variant}`,
      models: imported.model,
      data: tinystories({ tokenizer: { run: recorded } }),
      budget: { steps: 0 },
      optimizer: adamw({ lr: constant(3e-4) }),
    })
    const run: RunSpec = { format: 1, experiment: path.basename(out), variant: imported.variant, seed: 0, model: imported.model, training: base.training }
    const specHash = hashSpec(trainingIdentity(run))
    const summary = {
      experiment: run.experiment,
      variant: run.variant,
      seed: run.seed,
      specHash,
      params: paramCounts(imported.model),
      tokenizer: imported.tokenizer.label,
      tokenizerHash: imported.tokenizer.hash,
      tokenBudget: 0,
      tokensTrained: 0,
      steps: 0,
      finishedAt: new Date().toISOString(),
      imported: imported.source,
    }
    const staging = `${out}.import-${process.pid}`
    const write = Effect.gen(function* () {
      yield* fs.remove(staging, { recursive: true, force: true })
      yield* makeDirectory(staging)
      yield* writeFileAtomic(path.join(staging, "spec.json"), JSON.stringify(run, null, 2) + "\n")
      yield* writeFileAtomic(path.join(staging, "tokenizer.json"), imported.tokenizer.toJSON())
      yield* saveCheckpoint(staging, {
        params: Object.fromEntries(paramTable(imported.model).map((p) => [p.name, { shape: p.decl.shape, data: imported.weights[p.name]! }])),
        optimizer: {},
        state: { step: 0, tokensSeen: 0, specHash, dataCursor: null, rng: null, optimizer: null, extra: { identity: trainingIdentity(run), imported: imported.source } },
      })
      yield* writeFileAtomic(path.join(staging, "summary.json"), JSON.stringify(summary, null, 2) + "\n")
      yield* makeDirectory(path.dirname(out))
      // `target` found it missing or empty; an empty directory is replaced.
      yield* fs.remove(out, { recursive: true, force: true })
      yield* fs.rename(staging, out)
      yield* fsyncDirectory(path.dirname(out))
    })
    yield* write.pipe(
      Effect.catch((e) =>
        Effect.andThen(fs.remove(staging, { recursive: true, force: true }).pipe(Effect.ignore), Effect.fail(new ImportError({ problem: `cannot write ${out}: ${"message" in e ? e.message : String(e)}` }))),
      ),
    )
    return { out, run, summary } satisfies ImportResult
  })

/** A llama2.c model.bin (versions 0, 1, 2) and its tokenizer.bin; `download` says where they were fetched from, for the provenance. */
export const importLlama2c = (modelFile: string, tokenizerFile: string, options: { readonly out?: string; readonly download?: Readonly<Record<string, unknown>> } = {}) =>
  Effect.gen(function* () {
    const path = yield* Path.Path
    const fail = (problem: string) => new ImportError({ problem })
    const out = yield* target(stem(path, modelFile), options.out)
    const modelBytes = yield* readBytes(modelFile)
    const tokenizerBytes = yield* readBytes(tokenizerFile)
    const imported = fromLlama2c(modelBytes)
    if (!imported.ok) return yield* fail(`${modelFile}: cannot import it:\n${imported.problems.map((p) => `  - ${p}`).join("\n")}`)
    const tokenizer = yield* Effect.try({
      try: () => SentencePieceTokenizer.fromBin(tokenizerBytes, imported.header.vocab),
      catch: (e) => fail(`${tokenizerFile}: not the tokenizer.bin of this model: ${(e as Error).message}`),
    })
    const h = imported.header
    return yield* writeRun(out, {
      model: imported.spec,
      weights: imported.weights,
      tokenizer,
      variant: `llama2.c ${path.basename(modelFile)} (version ${h.version})`,
      source: {
        format: "llama2.c model.bin",
        version: h.version,
        file: path.resolve(modelFile),
        sha256: sha256(modelBytes),
        dequantised: imported.dequantised,
        ...(h.groupSize !== undefined ? { groupSize: h.groupSize } : {}),
        tokenizer: { file: path.resolve(tokenizerFile), sha256: sha256(tokenizerBytes) },
        ...(options.download !== undefined ? { download: options.download } : {}),
      },
    })
  })

/** A Hugging Face directory: config.json, model.safetensors (one file) and tokenizer.json. */
export const importHuggingFace = (dir: string, options: { readonly out?: string } = {}) =>
  Effect.gen(function* () {
    const path = yield* Path.Path
    const fail = (problem: string) => new ImportError({ problem })
    const out = yield* target(path.basename(path.resolve(dir)), options.out)
    const configBytes = yield* readBytes(path.join(dir, "config.json"))
    const config = yield* Effect.try({ try: () => JSON.parse(new TextDecoder().decode(configBytes)) as unknown, catch: (e) => fail(`${path.join(dir, "config.json")}: not JSON (${(e as Error).message})`) })
    if (typeof config !== "object" || config === null || Array.isArray(config)) return yield* fail(`${path.join(dir, "config.json")}: not a JSON object`)
    const modelFile = path.join(dir, "model.safetensors")
    const modelBytes = yield* readBytes(modelFile)
    const decoded = yield* decodeSafetensors(modelBytes, modelFile).pipe(Effect.mapError((e) => fail(e.message)))
    const floats = Object.fromEntries(Object.entries(decoded.tensors).flatMap(([n, t]) => (t.data instanceof Float32Array ? [[n, { shape: t.shape, data: t.data }]] : [])))
    const imported = fromHuggingFace(config as Record<string, unknown>, floats)
    if (!imported.ok) return yield* fail(`${dir}: cannot import it:\n${imported.problems.map((p) => `  - ${p}`).join("\n")}`)
    const tokenizerFile = path.join(dir, "tokenizer.json")
    const tokenizerBytes = yield* readBytes(tokenizerFile)
    const tokenizer = yield* Effect.try({ try: () => readTokenizer(new TextDecoder().decode(tokenizerBytes)), catch: (e) => fail(`${tokenizerFile}: ${(e as Error).message}`) })
    if (tokenizer.vocabSize !== imported.spec.vocab) return yield* fail(`${tokenizerFile}: ${tokenizer.vocabSize} ids; config.json's vocab_size is ${imported.spec.vocab}`)
    return yield* writeRun(out, {
      model: imported.spec,
      weights: imported.weights,
      tokenizer,
      variant: `${imported.architecture} ${path.basename(path.resolve(dir))}`,
      source: {
        format: `Hugging Face ${imported.architecture}`,
        file: path.resolve(modelFile),
        sha256: sha256(modelBytes),
        dequantised: false,
        config: { file: path.resolve(dir, "config.json"), sha256: sha256(configBytes) },
        tokenizer: { file: path.resolve(tokenizerFile), sha256: sha256(tokenizerBytes) },
      },
    })
  })
