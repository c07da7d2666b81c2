import * as tf from "@tensorflow/tfjs"
import { NodeServices } from "@effect/platform-node"
import { Effect, Exit, Layer } from "effect"
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { blocksOf, type DecoderSpec, llama, withPolicy } from "../../dsl/index.js"
import { depthPolicies, type PolicyOf, type PolicyTag, policyModule } from "../../dsl/kinds/depth/index.js"
import { exitsAt, keptBlocks } from "../../src/orchestration/depth-variants.js"
import { evaluateRun } from "../../src/orchestration/evaluate-run.js"
import { generate } from "../../src/eval/generate.js"
import { tokenRunData, runTokenizer } from "../../src/orchestration/data.js"
import type { RunSpec } from "../../src/experiment/define.js"
import { deriveRun, type Derivation } from "../../src/orchestration/derive-run.js"
import { expandRuns, loadExperiment } from "../../src/experiment/load.js"
import { openRun } from "../../src/orchestration/run-dir.js"
import { runAt } from "../../src/experiment/run-ref.js"
import { fromRun } from "../../src/experiment/warm-start/index.js"
import { type ExportFormat, exportFormats, exportRun } from "../../src/export/export-run.js"
import { llama2cIds } from "../../src/export/llama2c.js"
import { isExplicit, objectives, type ObjectiveOf, type ObjectiveTag } from "../../src/experiment/objective/spec.js"
import { pruneMethods } from "../../src/experiment/prune/methods/index.js"
import { trainOrPrune } from "../../src/prune/run.js"
import { Rng } from "../../src/random/rng.js"
import { experimentPage, metricsLimits } from "../../src/report/experiment-page.js"
import { ProgressSink } from "../../src/io/progress.js"
import { loadRuns } from "../../src/report/runs.js"
import { END_OF_TEXT, Tokenizer } from "../../src/tokenizer/tokenizer.js"
import type { RunData } from "../../src/train/run-data.js"
import { maxAbsDiff, projectLogits, readModelBin, safetensorsLookup } from "../export/fixtures.js"
import { ggufAsLlama, readGguf } from "../export/gguf-reader.js"
import { llamaLogits } from "../export/reference.js"
import { crashingAfter, tinyRun } from "../train/fixtures.js"

/**
 * The composition matrix: every objective × every depth policy × every way a run starts, built
 * from the registries, so a new entry is covered here without new test code (its example below
 * is the one line the compiler asks for). Each combination is either refused when its spec.json
 * is decoded, with a path, before anything is written, or it trains, resumes after a crash to
 * the bytes of an uninterrupted run, evaluates, generates, exports (exactly, or refused when
 * its policy departs from the plain stack), derives, and shows in the report; and distillation
 * with all its weight on the hard targets trains the bytes of plain cross-entropy.
 */
beforeAll(async () => {
  await tf.setBackend("cpu")
})

const quiet = Layer.succeed(ProgressSink, { isTTY: false, columns: () => 80, write: () => {}, now: () => performance.now() })
const run = <A, E>(e: Effect.Effect<A, E, any>) => Effect.runPromiseExit(Effect.scoped(e).pipe(Effect.provide(Layer.merge(NodeServices.layer, quiet))) as Effect.Effect<A, E>)
const tmp = () => mkdtempSync(join(tmpdir(), "compose-"))
const options = (out: string) => ({ out, fresh: false, backend: { name: "cpu", detail: "test" }, resumeCommand: "(test)" })
const errorOf = (exit: Exit.Exit<unknown, unknown>): string => {
  if (Exit.isSuccess(exit)) throw new Error("expected a failure")
  const failure = exit.cause.reasons.find((r) => r._tag === "Fail")
  return failure && "error" in failure ? (failure.error as { message: string }).message : String(exit.cause)
}
const valueOf = <A>(exit: Exit.Exit<A, unknown>): A => {
  if (Exit.isFailure(exit)) throw new Error(errorOf(exit))
  return exit.value
}

/** A byte-level tokenizer with two merges (259 ids, the fewest llama2c's run.c takes): eval, generate and export read it from a run directory. */
const utf8 = (s: string) => new TextEncoder().encode(s)
const tokenizer = new Tokenizer({
  tokens: [...Array.from({ length: 256 }, (_, b) => Uint8Array.of(b)), utf8("th"), utf8("the"), utf8(END_OF_TEXT)],
  specials: [{ content: END_OF_TEXT, id: 258 }],
  merges: [
    { left: 116, right: 104, id: 256 },
    { left: 256, right: 101, id: 257 },
  ],
})
const stories = (seed: number, n: number): string[] => {
  const rng = Rng.fromSeed(seed)
  const words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "home"]
  return Array.from({ length: n }, () => Array.from({ length: 4 + rng.nextInt(6) }, () => words[rng.nextInt(words.length)]!).join(" ") + ".")
}
const ids = (texts: string[]) => Uint16Array.from(texts.flatMap((t) => [...tokenizer.encode(t), tokenizer.eotId]))
/** The stories' ids, encoded once: every run reads them and none writes them. */
const trainIds = ids(stories(1, 300))
const validIds = ids(stories(2, 40))
const data = (): RunData => tokenRunData(runTokenizer(tokenizer, 259), trainIds, validIds, { train: 1, valid: 1 }, "compose-1-2")

/** Llama-shaped, so both export formats take it: width 16, two blocks, context 8. */
const model = (policy: Policy): DecoderSpec => withPolicy(llama({ vocab: 259, width: 16, context: 8, layers: 2, heads: 2 }), policy === "none" ? undefined : policyOf[policy])

/** One instance of each depth policy that departs from the plain stack where the policy can (the export formats refuse those). */
const policyOf: { readonly [K in PolicyTag]: PolicyOf<K> } = {
  "layer-drop": depthPolicies["layer-drop"].make({ rate: 0.5 }),
  "early-exit": depthPolicies["early-exit"].make({ threshold: 0.5 }),
  "mixture-of-depths": depthPolicies["mixture-of-depths"].make({ capacity: 0.5, every: 2 }),
}
type Policy = PolicyTag | "none"
const policies: ReadonlyArray<Policy> = ["none", ...(Object.keys(depthPolicies) as PolicyTag[])]

/** One instance of each objective, reading the teacher run in `teacher` where it reads one; distillation's adds a z-loss, so it meets every policy and start. */
const exampleOf: { readonly [K in ObjectiveTag]: (teacher: string) => ObjectiveOf<K> } = {
  "cross-entropy": () => objectives["cross-entropy"].make(),
  distill: (teacher) => objectives.distill.make({ teacher: runAt(teacher), temperature: 2, alpha: 0.5, divergence: "reverse-kl", zLoss: 1e-3 }),
}
/** The same objective with all its weight on the hard targets (and no z-loss): it must train the bytes of plain cross-entropy. */
const hardTargetsOnly: { readonly [K in ObjectiveTag]: (o: ObjectiveOf<K>) => ObjectiveOf<K> } = {
  "cross-entropy": (o) => o,
  distill: ({ hidden: _hidden, zLoss: _zLoss, ...o }) => ({ ...o, alpha: 1 }),
}
const objectiveTags = Object.keys(objectives) as ObjectiveTag[]
/** A tag's example and its hard-targets-only twin, typed for any tag. */
const examples = (tag: ObjectiveTag, teacher: string): [ObjectiveOf<ObjectiveTag>, ObjectiveOf<ObjectiveTag>] => {
  const example = exampleOf[tag](teacher)
  return [example, (hardTargetsOnly[tag] as (o: ObjectiveOf<ObjectiveTag>) => ObjectiveOf<ObjectiveTag>)(example)]
}

/** The pruning method of a pruned start (a fine-tune follows it). */
const method = pruneMethods.magnitude.make({ scope: "layer", sparsity: 0.5 })

const training = (steps: number): RunSpec["training"] => {
  const t = tinyRun({ steps, every: 2 }).training
  return { ...t, eval: { every: 1000, tokens: 64 }, sample: { ...t.sample, tokens: 4 } }
}

/** The finished runs a case starts from or distils from: one per policy (the plain one is also the teacher). */
const sources = {} as Record<Policy, string>
const sourceSpec = (policy: Policy): RunSpec => ({ format: 1, experiment: "source", variant: policy, seed: 3, model: model(policy), training: training(3) })

/** How a run starts: its spec's fields beyond the model, objective and training. */
const starts = {
  scratch: (): Partial<RunSpec> => ({}),
  "warm start": (policy: Policy): Partial<RunSpec> => ({ init: fromRun(runAt(sources[policy])) }),
  pruned: (policy: Policy): Partial<RunSpec> => ({ prune: { source: { experiment: "source", variant: policy, seed: 3, dir: sources[policy] }, method } }),
} as const
type Start = keyof typeof starts

const specOf = (objective: ObjectiveOf<ObjectiveTag>, policy: Policy, start: Start, variant: string): RunSpec => {
  const o = isExplicit(objective) ? { objective } : {}
  return { format: 1, experiment: "compose", variant, seed: 1, model: model(policy), training: training(3), ...starts[start](policy), ...o }
}

/** Decodes a spec as npm run exp reads a spec.json; a refusal names a path. */
const decode = async (spec: RunSpec): Promise<{ run: RunSpec } | { refused: string }> => {
  const file = join(tmp(), "spec.json")
  writeFileSync(file, JSON.stringify(spec))
  const exit = await run(loadExperiment(file).pipe(Effect.flatMap((l) => expandRuns(l, {}))))
  return Exit.isSuccess(exit) ? { run: exit.value[0]! } : { refused: errorOf(exit) }
}

const trainable = (d: { run: RunSpec } | { refused: string }): RunSpec => {
  if ("refused" in d) throw new Error(d.refused)
  return d.run
}
const train = async (spec: RunSpec, out: string, d = data()) => run(trainOrPrune(spec, d, options(out)))
const bytes = (dir: string, name: string) => readFileSync(join(dir, "checkpoint", name))

/** The exported model's logits at our ids, read back from its files by the float64 reference of each format. */
const exportedLogits: { readonly [F in ExportFormat]: (out: string, ids: number[]) => Float64Array[] } = {
  hf: (out, ids) => {
    const config = JSON.parse(readFileSync(join(out, "config.json"), "utf8")) as Record<string, unknown>
    return llamaLogits(config, safetensorsLookup(readFileSync(join(out, "model.safetensors"))).lookup, ids)
  },
  llama2c: (out, ids) => {
    // A copy: a Buffer from readFileSync may be a view into a larger pool, which the reader's Float32Array would read from its start.
    const bin = readModelBin(new Uint8Array(readFileSync(join(out, "model.bin"))))
    expect(bin.consumed).toBe(true)
    // run.c numbers the tokens its own way and pairs rotary dimensions interleaved.
    const map = llama2cIds(tokenizer)
    return llamaLogits(bin.config, bin.lookup, ids.map((id) => map[id]!), "interleaved").map((row) => Float64Array.from(map, (to) => row[to]!))
  },
  gguf: (out, ids) => {
    // llama.cpp pairs rotary dimensions interleaved, as run.c does.
    const { config, lookup } = ggufAsLlama(readGguf(new Uint8Array(readFileSync(join(out, "model.gguf")))))
    return llamaLogits(config, lookup, ids, "interleaved")
  },
}

/** What can be derived from a trained run; each either works or is refused with a message. */
const derivations: ReadonlyArray<[string, (run: RunSpec) => Derivation]> = [
  ["keep block 0", (r) => keptBlocks(r.model, [0], "0")],
  ["exit threshold 0.8", (r) => exitsAt(r.model, { threshold: 0.8 })],
]

const report = tmp()
const storyFile = join(tmp(), "stories.txt")
const promptIds = [...tokenizer.encode("the cat")]
/** A full context of ids (8). */
const logitIds = [...tokenizer.encode("the dog ra")]
/** The cross-entropy run of each policy and start (by "policy × start"), which distillation at α = 1 must equal. */
const plain = new Map<string, string>()
const trained: string[] = []

beforeAll(async () => {
  writeFileSync(storyFile, stories(5, 6).join(`\n${END_OF_TEXT}\n`))
  for (const policy of policies) {
    sources[policy] = tmp()
    valueOf(await train(sourceSpec(policy), sources[policy]))
  }
}, 120_000)

/** Evaluation, generation, export and derivation of a trained run directory. */
const useRun = async (dir: string, policy: Policy) => {
  await run(
    Effect.gen(function* () {
      const open = yield* openRun(dir)
      const evaluation = yield* evaluateRun(open, { file: storyFile, tokens: 32 })
      expect(Number.isFinite(evaluation.loss)).toBe(true)
      const sample = () => generate(open.model, open.params, promptIds, { tokens: 4, temperature: 0.8, topK: 5, topP: 0.95 }, Rng.fromSeed(9))
      const first = sample()
      expect(first).toHaveLength(4)
      expect(sample()).toEqual(first)
      const ours = projectLogits(open.model, open.params, logitIds)
      const p = open.run.model.layers.policy
      const departs = p && policyModule(p).departs(p, blocksOf(open.run.model.layers).length)
      for (const format of Object.keys(exportFormats) as ExportFormat[]) {
        const out = join(tmp(), format)
        const exported = yield* Effect.exit(exportRun(dir, format, { out }))
        if (departs) {
          expect(errorOf(exported), `${format}: ${departs}`).toMatch(new RegExp(`cannot export to ${format}:\\n  - at \\["layers","policy"\\]: `))
          expect(existsSync(out)).toBe(false)
        } else {
          expect(Exit.isSuccess(exported), `${format}: ${Exit.isFailure(exported) ? errorOf(exported) : ""}`).toBe(true)
          expect(maxAbsDiff(exportedLogits[format](out, logitIds), ours), format).toBeLessThan(1e-5)
        }
      }
    }),
  ).then(valueOf)
  for (const [name, derive] of derivations) {
    const out = join(tmp(), "derived")
    const exit = await run(deriveRun(dir, out, derive))
    if (name.startsWith("exit") && policy !== "early-exit") {
      expect(errorOf(exit)).toMatch(/not early exit$/)
      expect(existsSync(out)).toBe(false)
      continue
    }
    // Cutting blocks drops the policy: refused where the policy departs from the plain stack.
    const spec = (JSON.parse(readFileSync(join(dir, "spec.json"), "utf8")) as RunSpec).model
    const departs = spec.layers.policy && policyModule(spec.layers.policy).departs(spec.layers.policy, blocksOf(spec.layers).length)
    if (name.startsWith("keep") && departs !== undefined) {
      expect(errorOf(exit)).toMatch(/--keep-blocks: at \["layers","policy"\]: .*the kept blocks would run without it/)
      expect(existsSync(out)).toBe(false)
      continue
    }
    valueOf(exit)
    const loss = valueOf(await run(Effect.flatMap(openRun(out), (open) => evaluateRun(open, { file: storyFile, tokens: 32 })))).loss
    expect(Number.isFinite(loss), name).toBe(true)
  }
}

describe("every objective × depth policy × start composes, or is refused when decoded", { timeout: 60_000 }, () => {
  for (const objective of objectiveTags)
    for (const policy of policies)
      for (const start of Object.keys(starts) as Start[]) {
        const name = `${objective} × ${policy} × ${start}`
        it(name, async () => {
          const tensors = tf.memory().numTensors
          const [example, hard] = examples(objective, sources.none)
          const decoded = await decode(specOf(example, policy, start, name))
          if ("refused" in decoded) {
            expect(decoded.refused).toMatch(/^invalid run spec\n(.*\n)*at \[/)
            return
          }
          const out = join(report, name.replaceAll(" ", ""))
          valueOf(await train(decoded.run, out))
          trained.push(name)
          // A crash in step 3 (a checkpoint every 2 steps, 2 batches a step) and a resume end on the uninterrupted run's bytes.
          const resumed = tmp()
          expect(errorOf(await train(decoded.run, resumed, crashingAfter(data(), 5)))).toMatch(/simulated crash/)
          valueOf(await train(decoded.run, resumed))
          for (const file of ["model.safetensors", "optimizer.safetensors"]) expect(bytes(resumed, file).equals(bytes(out, file)), file).toBe(true)

          await useRun(out, policy)

          // All weight on the hard targets is plain cross-entropy with the same policy and start, bit for bit.
          const key = `${policy} × ${start}`
          if (objective === "cross-entropy") plain.set(key, out)
          else {
            const [hardDir, plainDir] = [tmp(), plain.get(key) ?? tmp()]
            valueOf(await train(trainable(await decode(specOf(hard, policy, start, name))), hardDir))
            if (!plain.has(key)) valueOf(await train(trainable(await decode(specOf(objectives["cross-entropy"].make(), policy, start, name))), plainDir))
            for (const file of ["model.safetensors", "optimizer.safetensors"]) expect(bytes(hardDir, file).equals(bytes(plainDir, file)), file).toBe(true)
          }
          expect(tf.memory().numTensors).toBe(tensors)
        })
      }

  it("the report page shows every trained run", async () => {
    const { runs, warnings } = valueOf(await run(loadRuns([report], metricsLimits)))
    expect(warnings).toEqual([])
    expect(runs.map((r) => r.spec.variant).sort()).toEqual([...trained].sort())
    const html = await experimentPage(runs, { title: "compose", variantOrder: [], pattern: () => "not drawn", generatedAt: new Date(), warnings })
    for (const name of trained) expect(html).toContain(name)
  })
})
