import { Data, Effect, FileSystem, Option, Path, Result } from "effect"
import { decodeSpec } from "../../dsl/decode.js"
import { hashSpec } from "../../dsl/hash.js"
import type { DecoderSpec } from "../../dsl/nodes.js"
import { paramTable } from "../../dsl/params.js"
import { ioReason } from "../errors/io-error.js"
import { writeFileAtomic } from "../io/atomic-write.js"
import { makeDirectory } from "../io/make-directory.js"
import { refuseWhileTraining } from "../io/run-lock.js"
import { loadCheckpoint, saveCheckpoint, type TensorArrays } from "../train/checkpoint.js"
import { trainingIdentity } from "../train/identity.js"
import type { RunSpec } from "../experiment/define.js"
import { expandRuns, loadExperiment } from "../experiment/load.js"

/**
 * A run directory derived from a trained one: another model whose parameters all come from
 * the source checkpoint, renamed (fewer blocks, another exit threshold). The optimiser moments
 * come along under the same names and the step stays the source's, so `npm run exp
 * <out>/spec.json -- --out <out>` finds a finished run and writes its evaluation and summary,
 * and `npm run eval` and `npm run generate` treat it like any other run. A source that is still
 * training is refused: its checkpoint is not final.
 */
export class DeriveError extends Data.TaggedError("DeriveError")<{ readonly problem: string }> {
  override get message(): string {
    return this.problem
  }
}

export interface Derivation {
  readonly model: DecoderSpec
  /** The source parameter each parameter of `model` is, by name. */
  readonly source: (name: string) => string
  /** What changed, appended to the variant name ("layerdrop, blocks 0,2,4"). */
  readonly note: string
}

const renamed = (saved: TensorArrays, names: ReadonlyArray<[string, string]>, prefix: string): TensorArrays =>
  Object.fromEntries(names.map(([to, from]) => [`${prefix}${to}`, saved[`${prefix}${from}`]!]))

/**
 * The optimiser's tensors of the kept parameters, renamed: AdamW's `m.`/`v.` and Muon's
 * `momentum.`, each where the source has it (Muon keeps momentum only for the matrices it
 * updates, AdamW's moments for the rest).
 */
const optimizerRenamed = (saved: TensorArrays, names: ReadonlyArray<[string, string]>): TensorArrays =>
  Object.assign({}, ...["m.", "v.", "momentum."].map((prefix) => renamed(saved, names.filter(([, from]) => saved[`${prefix}${from}`] !== undefined), prefix)))

export const deriveRun = (dir: string, out: string, derive: (run: RunSpec) => Derivation) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const fail = (problem: string) => new DeriveError({ problem })
    yield* refuseWhileTraining(dir, "derive from it").pipe(Effect.mapError((e) => fail(e.message)))
    const loaded = yield* loadExperiment(path.join(dir, "spec.json")).pipe(Effect.mapError((e) => fail(e.message)))
    const [run] = yield* expandRuns(loaded, {}).pipe(Effect.mapError((e) => fail(e.message)))
    const checkpoint = yield* loadCheckpoint(dir).pipe(Effect.mapError((e) => fail(e.message)))
    if (Option.isNone(checkpoint)) return yield* fail(`${dir} has no checkpoint yet`)
    const d = yield* Effect.try({ try: () => derive(run!), catch: (e) => fail(`${dir}: ${(e as Error).message}`) })
    const decoded = decodeSpec(JSON.parse(JSON.stringify(d.model)))
    if (Result.isFailure(decoded)) return yield* fail(`the derived model is invalid:\n${decoded.failure.message}`)
    const ck = checkpoint.value
    const names = paramTable(d.model).map((p): [string, string] => [p.name, d.source(p.name)])
    for (const [to, from] of names) {
      const shape = paramTable(d.model).find((p) => p.name === to)!.decl.shape
      const saved = ck.params[from]
      if (saved === undefined) return yield* fail(`${dir}: the checkpoint has no "${from}" for the derived model's "${to}"`)
      if (saved.shape.join(",") !== shape.join(",")) return yield* fail(`${dir}: "${from}" has shape [${saved.shape}], the derived "${to}" needs [${shape}]`)
    }
    // Results are never overwritten: the output must be new or empty.
    const existing = yield* fs.readDirectory(out).pipe(Effect.orElseSucceed(() => [] as string[]))
    if (existing.length > 0) return yield* fail(`${out} is not empty; choose a new directory for the derived run`)
    const derived: RunSpec = { ...run!, variant: `${run!.variant}, ${d.note}`, model: d.model }
    yield* makeDirectory(out).pipe(Effect.mapError((e) => fail(`cannot create ${out}: ${ioReason(e)}`)))
    const tokenizer = yield* fs.readFileString(path.join(dir, "tokenizer.json")).pipe(Effect.mapError((e) => fail(`cannot read tokenizer.json: ${e.message}`)))
    const write = (name: string, text: string) => writeFileAtomic(path.join(out, name), text).pipe(Effect.mapError((e) => fail(e.message)))
    yield* write("spec.json", JSON.stringify(derived, null, 2) + "\n")
    yield* write("tokenizer.json", tokenizer)
    const moments = optimizerRenamed(ck.optimizer, names)
    yield* saveCheckpoint(out, {
      params: renamed(ck.params, names, ""),
      optimizer: moments,
      state: {
        ...ck.state,
        specHash: hashSpec(trainingIdentity(derived)),
        extra: { ...(ck.state.extra as object | undefined), identity: trainingIdentity(derived), derived: { from: path.resolve(dir), change: d.note } },
      },
    }).pipe(Effect.mapError((e) => fail(e.message)))
    return derived
  })
