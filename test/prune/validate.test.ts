import { NodeServices } from "@effect/platform-node"
import { Effect, Exit } from "effect"
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, relative } from "node:path"
import { describe, expect, it } from "vitest"
import { adamw, constant, distill, experiment, gradual, heads, magnitude, neurons, prune, runOf, tinystories } from "../../src/index.js"
import type { VariantModel } from "../../src/experiment/define.js"
import { expandRuns, type Loaded, loadExperiment } from "../../src/experiment/load.js"
import { repoRoot } from "../../src/io/paths.js"
import type { PruneMethod } from "../../src/experiment/prune/methods/index.js"
import { trainSources } from "../../src/orchestration/prerequisites.js"
import { checkSources } from "../../src/prune/source.js"
import { saveCheckpoint } from "../../src/train/checkpoint.js"

/**
 * Bad pruning input is refused before any work (nothing is trained, no data is read), with
 * one message that says what and where. The sources are experiments/smoke.ts's run: 2
 * blocks of 2 heads and 128 FFN neurons, BPE 512.
 */
const run = <A, E>(effect: Effect.Effect<A, E, any>) => Effect.runPromiseExit(effect.pipe(Effect.provide(NodeServices.layer)) as Effect.Effect<A, E>)
const messageOf = (exit: Exit.Exit<unknown, unknown>): string => {
  if (Exit.isSuccess(exit)) throw new Error("expected a failure")
  const failure = exit.cause.reasons.find((r) => r._tag === "Fail")
  return (failure as { error: { message: string } }).error.message
}

const root = repoRoot()
const loaded = (models: Record<string, VariantModel>, bpe = 512): Loaded => ({
  name: "bad",
  source: "experiments/bad.ts",
  experiment: experiment({ description: "", models, data: tinystories({ tokenizer: { bpe } }), budget: { steps: 2 }, optimizer: adamw({ lr: constant(1e-3) }) }),
})

const expand = (models: Record<string, VariantModel>, runs = mkdtempSync(join(tmpdir(), "prune-validate-")), bpe?: number) =>
  run(expandRuns(loaded(models, bpe), { runs }))

const one = (method: PruneMethod, finetune = false) => ({ m: prune({ source: "smoke", method, ...(finetune ? { finetune: { steps: 4 } } : {}) }) })

describe("pruning input checks", () => {
  const cases: Array<[string, Record<string, VariantModel>, RegExp]> = [
    ["a sparsity of 1 or more", one(magnitude({ sparsity: 1 })), /at \["models","m","method","sparsity"\]: 1 is outside \[0, 1\)/],
    ["a negative sparsity", one(magnitude({ sparsity: -0.1 })), /at \["models","m","method","sparsity"\]: -0\.1 is outside \[0, 1\)/],
    [
      "more heads removed than the layers can give",
      one(heads({ remove: 0.9 })),
      /at \["models","m","method","remove"\]: removing 0\.9 of the 4 heads is 4, but each of the 2 layers keeps at least one, so at most 2 can go/,
    ],
    ["every head of a layer", one(heads({ remove: [2, 0] })), /at \["models","m","method","remove",0\]: layer 0 has 2 heads; removing 2 would leave none: every layer keeps at least one/],
    ["every neuron of a layer", one(neurons({ remove: [5, 128] })), /at \["models","m","method","remove",1\]: layer 1 has 128 neurons; removing 128 would leave none/],
    [
      "a method unknown to the registry",
      { m: { op: "prune", source: { experiment: "smoke" }, method: { kind: "lottery", sparsity: 0.5 } } as unknown as VariantModel },
      /at \["models","m","method","kind"\]: unknown pruning method "lottery"; expected one of magnitude, gradual, wanda, heads, neurons/,
    ],
    ["gradual pruning without a fine-tune", one(gradual({ sparsity: 0.5 })), /at \["models","m","method"\]: gradual pruning happens during a fine-tune; give the variant finetune/],
    ["a source experiment that does not exist", { m: prune({ source: "no-such-source", method: magnitude({ sparsity: 0.5 }) }) }, /at \["models","m","source","experiment"\]: no such experiment/],
    [
      "a distillation fine-tune matching a student block the pruned model lacks",
      { m: prune({ source: "smoke", method: neurons({ remove: 0.5 }), finetune: { steps: 4, objective: distill({ teacher: runOf("smoke"), temperature: 1, alpha: 0, hidden: { pairs: [[2, 1]] } }) } }) },
      /at \["models","m","finetune","objective","hidden","pairs",0,0\]: .*block 2/,
    ],
    [
      "a distillation fine-tune at temperature 0",
      { m: prune({ source: "smoke", method: neurons({ remove: 0.5 }), finetune: { steps: 4, objective: distill({ teacher: runOf("smoke"), temperature: 0, alpha: 0 }) } }) },
      /at \["models","m","finetune","objective","temperature"\]: Expected a value greater than 0/,
    ],
    ["a source variant that does not exist", { m: prune({ source: { experiment: "smoke", variant: "big" }, method: magnitude({ sparsity: 0.5 }) }) }, /experiment "smoke" has no variant "big"; name one of base/],
  ]

  it.each(cases)("refuses %s, naming the field", async (_name, models, expected) => {
    const message = messageOf(await expand(models))
    expect(message).toMatch(expected)
    expect(message.split("\n").filter((l) => l.startsWith("at "))).toHaveLength(1)
  })

  it("refuses a source trained on other data: a pruned model keeps its source's tokenizer", async () => {
    expect(messageOf(await expand(one(magnitude({ sparsity: 0.5 })), undefined, 4096))).toMatch(/smoke\/base is trained on .*"bpe":512.* but this experiment's data is .*"bpe":4096/)
  })

  it("accepts good input: one run per seed, one-shot as zero steps, the source's directory recorded", async () => {
    const runs = mkdtempSync(join(tmpdir(), "prune-validate-"))
    const exit = await expand({ ...one(heads({ remove: 0.5 }), true), d: prune({ source: "smoke", method: magnitude({ sparsity: 0 }) }) }, runs)
    expect(Exit.isSuccess(exit)).toBe(true)
    const [ft, shot] = Exit.isSuccess(exit) ? exit.value : []
    expect(ft!.training.budget).toEqual({ steps: 4 })
    expect(shot!.training.budget).toEqual({ steps: 0 })
    expect(shot!.prune!.source).toEqual({ experiment: "smoke", variant: "base", seed: 1, dir: join(runs, "smoke") })
    // A missing source is no error for an experiment: it is trained first.
    expect(Exit.isSuccess(await run(checkSources([ft!, shot!])))).toBe(true)
  })

  it("takes a source given as a run's spec.json to be that run directory, as the missing-source hint says", async () => {
    const [source] = await Effect.runPromise(Effect.flatMap(loadExperiment("smoke"), (l) => expandRuns(l, {})))
    const dir = join(mkdtempSync(join(tmpdir(), "prune-validate-")), "x")
    mkdirSync(dir)
    writeFileSync(join(dir, "spec.json"), JSON.stringify(source))
    const exit = await expand({ m: prune({ source: relative(root, join(dir, "spec.json")), method: magnitude({ sparsity: 0.5 }) }) })
    const [r] = Exit.isSuccess(exit) ? exit.value : expect.fail(messageOf(exit))
    expect(r!.prune!.source).toEqual({ experiment: "smoke", variant: "base", seed: 1, dir })
    // Another variant or seed than the spec.json's is refused, naming the file.
    const other = await expand({ m: prune({ source: { experiment: join(dir, "spec.json"), seed: 2 }, method: magnitude({ sparsity: 0.5 }) }) })
    expect(messageOf(other)).toMatch(/at \["models","m","source","seed"\]: .*x\/spec\.json is seed 1, not 2/)
  })

  it("gives a fine-tune's distillation objective to its runs (prune-then-distill); cross-entropy, the default, is left out as for any run", async () => {
    const objective = distill({ teacher: runOf("smoke"), temperature: 1, alpha: 0 })
    const finetune = (o: object) => prune({ source: "smoke", method: neurons({ remove: 0.5 }), finetune: { steps: 4, ...o } })
    const exit = await expand({ kd: finetune({ objective }), ce: finetune({ objective: { kind: "cross-entropy" } }), plain: finetune({}) })
    expect(Exit.isSuccess(exit)).toBe(true)
    const [kd, ce, plain] = Exit.isSuccess(exit) ? exit.value : []
    expect(kd!.objective).toEqual(objective)
    expect(kd!.prune!.method).toEqual(plain!.prune!.method)
    expect("objective" in ce! || "objective" in plain!).toBe(false)
  })

  it("refuses an unfinished source before any work, and a spec.json's source that is unfinished or missing", async () => {
    const runs = mkdtempSync(join(tmpdir(), "prune-validate-"))
    const exit = await expand(one(magnitude({ sparsity: 0.5 })), runs)
    const [r] = Exit.isSuccess(exit) ? exit.value : []
    // runs/smoke with a checkpoint at step 20 and no summary.json: interrupted, or training elsewhere now.
    const dir = join(runs, "smoke")
    mkdirSync(dir)
    writeFileSync(join(dir, "spec.json"), "{}")
    const state = { step: 20, tokensSeen: 5120, specHash: "abc", dataCursor: null, rng: null, optimizer: null }
    expect(Exit.isSuccess(await run(saveCheckpoint(dir, { params: { w: { shape: [1], data: new Float32Array(1) } }, optimizer: {}, state })))).toBe(true)
    // As every source run is: refused before anything trains (nothing is trained, so no backend is needed).
    const sources = await run(trainSources([r!], { backend: { name: "cpu", detail: "test" }, resumeCommand: "(test)" }))
    expect(messageOf(sources)).toBe(`m (seed 1): pruning source ${dir}: the run is unfinished (no summary.json) and no process is training it (it failed or was interrupted); finish it first with npm run exp smoke -- --variant base --seed 1`)
    const recorded = (at: string) => ({ ...r!, prune: { ...r!.prune!, source: { ...r!.prune!.source, dir: at, checkpoint: "0".repeat(64) } } })
    expect(messageOf(await run(checkSources([recorded(dir)])))).toMatch(
      new RegExp(`bad/m seed 1: the source run ${dir} is unfinished \\(checkpoint at step 20, no summary.json\\); finish it first with npm run exp smoke`),
    )
    expect(messageOf(await run(checkSources([recorded(join(runs, "gone"))])))).toMatch(/the source run .*gone does not exist; this spec.json was pruned from it/)
  })
})
