import { createHash } from "node:crypto"
import { Data, Effect, FileSystem, Path } from "effect"
import { hashSpec, paramCounts, paramTable } from "../../dsl/index.js"
import { ioReason } from "../errors/io-error.js"
import { fsyncDirectory, writeFileAtomic } from "../io/atomic-write.js"
import { makeDirectory } from "../io/make-directory.js"
import { runsFolder } from "../io/paths.js"
import { experiment, type RunSpec, tinystories } from "../experiment/define.js"
import { isInside, nameProblem } from "../experiment/names.js"
import { adamw } from "../experiment/optimizer/spec.js"
import { constant } from "../schedule/index.js"
import { SentencePieceTokenizer } from "../tokenizer/sentencepiece.js"
import { saveCheckpoint } from "../train/checkpoint.js"
import { trainingIdentity } from "../train/identity.js"
import { fromLlama2c } from "./llama2c.js"

/**
 * A model trained elsewhere made a finished run directory of this lab: spec.json (the model in
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

/** The directory name runs/imports/ keeps for imported models. */
export const IMPORTS = "imports"

export interface ImportResult {
  readonly out: string
  readonly run: RunSpec
  readonly summary: Readonly<Record<string, unknown>>
}

const sha256 = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex")

/** `file`'s name without its extension: stories15M.bin → stories15M. */
const stem = (path: Path.Path, file: string): string => path.basename(file, path.extname(file))

export const importLlama2c = (modelFile: string, tokenizerFile: string, options: { readonly out?: string } = {}) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const fail = (problem: string) => new ImportError({ problem })
    const out = path.resolve(options.out ?? path.join(runsFolder(), IMPORTS, stem(path, modelFile)))
    const name = path.basename(out)
    const badName = nameProblem(name)
    if (badName !== undefined) return yield* fail(`${out}: the run's directory names it: ${badName} (choose another --out)`)
    // A finished run is never overwritten: the output must be new or empty.
    const existing = yield* fs.readDirectory(out).pipe(Effect.orElseSucceed((): string[] => []))
    if (existing.length > 0) return yield* fail(`${out} is not empty; an import never overwrites a run: choose another --out`)

    const read = (file: string) => fs.readFile(file).pipe(Effect.mapError((e) => fail(`cannot read ${file}: ${ioReason(e)}`)))
    const modelBytes = yield* read(modelFile)
    const tokenizerBytes = yield* read(tokenizerFile)
    const imported = fromLlama2c(modelBytes)
    if (!imported.ok) return yield* fail(`${modelFile}: cannot import it:\n${imported.problems.map((p) => `  - ${p}`).join("\n")}`)
    const tokenizer = yield* Effect.try({
      try: () => SentencePieceTokenizer.fromBin(tokenizerBytes, imported.header.vocab),
      catch: (e) => fail(`${tokenizerFile}: not the tokenizer.bin of this model: ${(e as Error).message}`),
    })

    const h = imported.header
    const recorded = isInside(runsFolder(), out) ? path.relative(runsFolder(), out) : out
    const base = experiment({
      description: `imported from llama2.c ${path.basename(modelFile)}`,
      models: imported.spec,
      data: tinystories({ tokenizer: { run: recorded } }),
      budget: { steps: 0 },
      optimizer: adamw({ lr: constant(3e-4) }),
    })
    const run: RunSpec = {
      format: 1,
      experiment: name,
      variant: `llama2.c ${path.basename(modelFile)} (version ${h.version})`,
      seed: 0,
      model: imported.spec,
      training: base.training,
    }
    const specHash = hashSpec(trainingIdentity(run))
    const source = {
      format: "llama2.c model.bin",
      version: h.version,
      file: path.resolve(modelFile),
      sha256: sha256(modelBytes),
      dequantised: imported.dequantised,
      ...(h.groupSize !== undefined ? { groupSize: h.groupSize } : {}),
      tokenizer: { file: path.resolve(tokenizerFile), sha256: sha256(tokenizerBytes) },
    }
    const summary = {
      experiment: run.experiment,
      variant: run.variant,
      seed: run.seed,
      specHash,
      params: paramCounts(imported.spec),
      tokenizer: tokenizer.label,
      tokenizerHash: tokenizer.hash,
      tokenBudget: 0,
      tokensTrained: 0,
      steps: 0,
      finishedAt: new Date().toISOString(),
      imported: source,
    }

    // Written whole into a sibling, then renamed into place: no reader sees half a run.
    const staging = `${out}.import-${process.pid}`
    const write = Effect.gen(function* () {
      yield* fs.remove(staging, { recursive: true, force: true })
      yield* makeDirectory(staging)
      yield* writeFileAtomic(path.join(staging, "spec.json"), JSON.stringify(run, null, 2) + "\n")
      yield* writeFileAtomic(path.join(staging, "tokenizer.json"), tokenizer.toJSON())
      const shapes = new Map(paramTable(imported.spec).map((p) => [p.name, p.decl.shape]))
      yield* saveCheckpoint(staging, {
        params: Object.fromEntries([...shapes].map(([n, shape]) => [n, { shape, data: imported.weights[n]! }])),
        optimizer: {},
        state: { step: 0, tokensSeen: 0, specHash, dataCursor: null, rng: null, optimizer: null, extra: { identity: trainingIdentity(run), imported: source } },
      })
      yield* writeFileAtomic(path.join(staging, "summary.json"), JSON.stringify(summary, null, 2) + "\n")
      yield* makeDirectory(path.dirname(out))
      if (existing.length === 0) yield* fs.remove(out, { recursive: true, force: true })
      yield* fs.rename(staging, out)
      yield* fsyncDirectory(path.dirname(out))
    })
    yield* write.pipe(
      Effect.catch((e) => Effect.andThen(fs.remove(staging, { recursive: true, force: true }).pipe(Effect.ignore), Effect.fail(fail(`cannot write ${out}: ${"message" in e ? e.message : String(e)}`)))),
    )
    return { out, run, summary } satisfies ImportResult
  })
