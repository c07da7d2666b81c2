import * as tf from "@tensorflow/tfjs"
import { NodeServices } from "@effect/platform-node"
import { Effect, Exit, Layer } from "effect"
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { attention, block, decoder, depth, type DepthPolicy, earlyExit, ffn, keepBlocks, layerDrop, mixtureOfDepths, stack } from "../../dsl/index.js"
import type { RunSpec } from "../../src/experiment/define.js"
import { expandRuns, loadExperiment } from "../../src/experiment/load.js"
import { trainSources } from "../../src/orchestration/prerequisites.js"
import { runAt } from "../../src/experiment/run-ref.js"
import { fromRun } from "../../src/experiment/warm-start/index.js"
import { compile, initValues } from "../../src/model/index.js"
import { distill, type Objective } from "../../src/experiment/objective/spec.js"
import { ProgressSink } from "../../src/io/progress.js"
import { decodeSafetensors } from "../../src/train/safetensors.js"
import { trainRun } from "../../src/train/run.js"
import type { RunOptions } from "../../src/train/run-options.js"
import type { RunData } from "../../src/train/run-data.js"
import { describeNative } from "../backend/native-suite.js"
import { snapshot } from "../files.js"
import { syntheticData, tinyRun, crashingAfter } from "../train/fixtures.js"

/**
 * Distillation runs end to end on the synthetic corpus: a tiny teacher is trained once, then
 * students learn from it. Stock cpu unless a test says otherwise.
 */
beforeAll(async () => {
  await tf.setBackend("cpu")
})

const quiet = Layer.succeed(ProgressSink, { isTTY: false, columns: () => 80, write: () => {}, now: () => performance.now() })
const options = (out: string, backend = "cpu"): RunOptions => ({ out, fresh: false, backend: { name: backend, detail: "test" }, resumeCommand: "(test)" })
const runIn = (run: RunSpec, data: RunData, opts: RunOptions) =>
  Effect.runPromiseExit(Effect.scoped(trainRun(run, data, opts)).pipe(Effect.provide(Layer.merge(NodeServices.layer, quiet))))
const tmp = () => mkdtempSync(join(tmpdir(), "distill-test-"))
const file = (dir: string, name: string) => readFileSync(join(dir, "checkpoint", name))
const read = (dir: string) => Effect.runSync(decodeSafetensors(file(dir, "model.safetensors"), "model")).tensors
const errorOf = (exit: Exit.Exit<unknown, unknown>): string => {
  if (Exit.isSuccess(exit)) throw new Error("expected the run to fail")
  const failure = exit.cause.reasons.find((r) => r._tag === "Fail")
  return failure && "error" in failure ? (failure.error as { message: string }).message : String(exit.cause)
}
const ok = async (run: RunSpec, out: string, data = syntheticData(), backend = "cpu") => {
  const exit = await runIn(run, data, options(out, backend))
  if (Exit.isFailure(exit)) throw new Error(errorOf(exit))
}

const gelu = block({ attention: attention("full", { heads: 2 }), ffn: ffn("gelu") })
/** The teacher: width 16, three blocks. */
const teacherRun = (): RunSpec => {
  const base = tinyRun({ steps: 8, seed: 7 })
  return { ...base, experiment: "teacher", model: { ...base.model, layers: depth(3, gelu) } }
}
/** A student of width 8 and two blocks, with dropout, so resumes exercise the derived masks. */
const student = (o: { steps: number; every?: number; objective?: Objective; seed?: number; policy?: DepthPolicy }): RunSpec => {
  const base = tinyRun({ steps: o.steps, every: o.every ?? 1000, dropout: 0.1, seed: o.seed ?? 1 })
  return {
    ...base,
    experiment: "student",
    model: decoder({ vocab: 17, width: 8, context: 8, dropout: 0.1, layers: depth(2, block({ attention: attention("full", { heads: 2, dropout: 0.1 }), ffn: ffn("gelu") }), o.policy) }),
    ...(o.objective ? { objective: o.objective } : {}),
  }
}

let teacherDir = ""
beforeAll(async () => {
  teacherDir = tmp()
  await ok(teacherRun(), teacherDir)
}, 120_000)

const kd = (o: Partial<{ alpha: number; temperature: number; divergence: "forward-kl" | "reverse-kl"; hidden: { pairs: Array<[number, number]>; loss?: "cosine" | "mse"; weight?: number } }> = {}) =>
  distill({ teacher: runAt(teacherDir), temperature: o.temperature ?? 2, alpha: o.alpha ?? 0.5, divergence: o.divergence ?? "forward-kl", ...(o.hidden ? { hidden: o.hidden } : {}) })

describe("distillation runs", () => {
  it("with α = 1 train the same weights as plain cross-entropy, bit for bit", async () => {
    const plain = tmp()
    await ok(student({ steps: 6 }), plain)
    for (const divergence of ["forward-kl", "reverse-kl"] as const) {
      const distilled = tmp()
      await ok(student({ steps: 6, objective: kd({ alpha: 1, temperature: 3, divergence }) }), distilled)
      expect(file(distilled, "model.safetensors").equals(file(plain, "model.safetensors")), divergence).toBe(true)
      expect(file(distilled, "optimizer.safetensors").equals(file(plain, "optimizer.safetensors")), divergence).toBe(true)
    }
  })

  // The policies' own parameters: early exit's head after block 0, mixture-of-depths' router and predictor in block 1.
  const policies: Array<[string, DepthPolicy, ReadonlyArray<string>]> = [
    ["an early-exit student (heads per block)", earlyExit({ threshold: 0.5, heads: "per-block" }), ["blocks.0.exit.weight"]],
    ["a mixture-of-depths student", mixtureOfDepths({ capacity: 0.5, every: 2, predictor: 4 }), ["blocks.1.predictor.w1", "blocks.1.predictor.b1", "blocks.1.predictor.w2", "blocks.1.predictor.b2", "blocks.1.router.weight"]],
  ]
  for (const [name, policy, own] of policies) {
    it(`${name}: with α = 1 trains the same weights as plain cross-entropy with the policy, bit for bit, its own parameters included`, async () => {
      const plain = tmp()
      await ok(student({ steps: 4, policy }), plain)
      const distilled = tmp()
      await ok(student({ steps: 4, policy, objective: kd({ alpha: 1, temperature: 3 }) }), distilled)
      expect(Object.keys(read(plain))).toEqual(expect.arrayContaining([...own]))
      expect(file(distilled, "model.safetensors").equals(file(plain, "model.safetensors"))).toBe(true)
      expect(file(distilled, "optimizer.safetensors").equals(file(plain, "optimizer.safetensors"))).toBe(true)
    })

    it(`${name}: with soft targets trains the policy's own parameters too`, async () => {
      const run = student({ steps: 4, policy, objective: kd({ alpha: 0 }) })
      const out = tmp()
      await ok(run, out)
      const [initial, after] = [initValues(compile(run.model).table, run.seed), read(out)]
      for (const p of own) {
        const [x, y] = [initial.get(p)!, after[p]!.data as Float32Array]
        expect(x.length, p).toBe(y.length)
        // Weight decay alone only scales the initial values (y = c·x up to rounding); Adam's steps of about lr do not.
        const xx = x.reduce((a, v) => a + v * v, 0)
        const c = xx === 0 ? 0 : x.reduce((a, v, i) => a + v * y[i]!, 0) / xx
        expect(Math.max(...Array.from(y, (v, i) => Math.abs(v - c * x[i]!))), p).toBeGreaterThan(1e-5)
      }
    })
  }

  it("with α < 1 learn something else, leave the teacher's files byte-identical and record the teacher's fingerprint", async () => {
    const before = snapshot(teacherDir)
    const plain = tmp()
    await ok(student({ steps: 6 }), plain)
    const out = tmp()
    await ok(student({ steps: 6, objective: kd({ alpha: 0.5, hidden: { pairs: [[1, 2]], loss: "mse", weight: 0.5 } }) }), out)
    expect(snapshot(teacherDir)).toEqual(before)
    expect(file(out, "model.safetensors").equals(file(plain, "model.safetensors"))).toBe(false)
    const spec = JSON.parse(readFileSync(join(out, "spec.json"), "utf8")) as RunSpec
    expect(spec.objective).toMatchObject({ kind: "distill", alpha: 0.5, teacher: { run: teacherDir, fingerprint: expect.stringMatching(/^[0-9a-f]{16}$/) } })
    // The projection from width 8 to the teacher's 16 is saved with the weights, outside the model's table.
    const saved = Effect.runSync(decodeSafetensors(file(out, "model.safetensors"), "model")).tensors
    expect(saved["objective.hidden.0.projection"]?.shape).toEqual([8, 16])
    const summary = JSON.parse(readFileSync(join(out, "summary.json"), "utf8"))
    expect(Number.isFinite(summary.valLoss)).toBe(true)
  })

  it("resumes after a crash to the bytes of an uninterrupted run, hidden-state projection included", async () => {
    const run = student({ steps: 8, every: 4, objective: kd({ alpha: 0.3, divergence: "reverse-kl", hidden: { pairs: [[0, 1]] } }) })
    const straight = tmp()
    await ok(run, straight)
    const resumed = tmp()
    expect(errorOf(await runIn(run, crashingAfter(syntheticData(), 11), options(resumed)))).toMatch(/simulated crash/)
    expect(JSON.parse(readFileSync(join(resumed, "checkpoint", "state.json"), "utf8")).step).toBe(5)
    await ok(run, resumed)
    expect(file(resumed, "model.safetensors").equals(file(straight, "model.safetensors"))).toBe(true)
    expect(file(resumed, "optimizer.safetensors").equals(file(straight, "optimizer.safetensors"))).toBe(true)
  })

  it("refuses to resume with a different objective or a changed teacher, with the diff", async () => {
    const out = tmp()
    await ok(student({ steps: 3, every: 1, objective: kd({ alpha: 0.5 }) }), out)
    const model = file(out, "model.safetensors")
    expect(errorOf(await runIn(student({ steps: 4, every: 1, objective: kd({ alpha: 0.25 }) }), syntheticData(), options(out)))).toMatch(
      /holds a finished run of another spec[\s\S]*never overwritten[\s\S]*objective\.alpha: 0\.5 → 0\.25/,
    )
    expect(errorOf(await runIn(student({ steps: 4, every: 1 }), syntheticData(), options(out)))).toMatch(/objective: \{"kind":"distill".* → \(absent\)/)
    // The same teacher directory, retrained with another seed.
    const changed = tmp()
    cpSync(teacherDir, changed, { recursive: true })
    const other = distill({ teacher: runAt(changed), temperature: 2, alpha: 0.5 })
    const out2 = tmp()
    await ok(student({ steps: 3, every: 1, objective: other }), out2)
    rmSync(changed, { recursive: true })
    await ok({ ...teacherRun(), seed: 8 }, changed)
    expect(errorOf(await runIn(student({ steps: 4, every: 1, objective: other }), syntheticData(), options(out2)))).toMatch(/objective\.teacher\.fingerprint: "[0-9a-f]+" → "[0-9a-f]+"/)
    // Replaying the student's spec.json names the change instead.
    const replay = { ...(JSON.parse(readFileSync(join(out2, "spec.json"), "utf8")) as RunSpec), training: { ...student({ steps: 4 }).training } }
    expect(errorOf(await runIn(replay, syntheticData(), options(tmp())))).toMatch(/teacher .*: changed since this run started from it \(fingerprint [0-9a-f]+, now [0-9a-f]+\)/)
    expect(file(out, "model.safetensors").equals(model)).toBe(true)
  }, 60_000)

  it("starts from a teacher's blocks (every other one) or from a whole run by name", async () => {
    const teacherSpec = teacherRun().model
    const base = tinyRun({ steps: 1, lr: 1e-30 })
    const shallow: RunSpec = { ...base, model: keepBlocks(teacherSpec, [0, 2]), init: fromRun(runAt(teacherDir), { blocks: [0, 2] }) }
    const out = tmp()
    await ok(shallow, out)
    const [t, s] = [read(teacherDir), read(out)]
    const same = (a: string, b: string) => {
      const [x, y] = [s[a]!.data as Float32Array, t[b]!.data as Float32Array]
      expect(x.length, a).toBe(y.length)
      // One step at lr 1e-30 moves no weight by a representable amount.
      for (let i = 0; i < x.length; i++) if (Math.abs(x[i]! - y[i]!) > 1e-20) expect(`${a}[${i}] = ${x[i]}`).toBe(`${b}[${i}] = ${y[i]}`)
    }
    for (const name of Object.keys(s)) same(name, name.replace(/^blocks\.1\./, "blocks.2."))
    expect(Object.keys(s).some((n) => n.startsWith("blocks.1."))).toBe(true)
    // The generic hook (a pruned run, say): every parameter by name.
    const whole = tmp()
    await ok({ ...base, model: teacherSpec, init: fromRun(runAt(teacherDir)) }, whole)
    const w = read(whole)
    for (const name of Object.keys(t)) expect(Math.max(...Array.from(w[name]!.data as Float32Array, (x, i) => Math.abs(x - (t[name]!.data as Float32Array)[i]!)))).toBeLessThan(1e-20)
  })
})

describe("bad distillation input: one message, nothing written", () => {
  const refused = async (run: RunSpec, pattern: RegExp, data = syntheticData()) => {
    const out = join(tmp(), "student")
    expect(errorOf(await runIn(run, data, options(out)))).toMatch(pattern)
    expect(existsSync(out)).toBe(false)
  }

  it("a missing or unfinished teacher run, saying how it would be made", async () => {
    const missing = join(tmp(), "nothing-here")
    await refused(student({ steps: 2, objective: distill({ teacher: runAt(missing), temperature: 2, alpha: 0.5 }) }), /teacher .*nothing-here: no run there \(no spec\.json\); train it first/)
    await refused(
      student({ steps: 2, objective: distill({ teacher: { run: missing, experiment: "base" }, temperature: 2, alpha: 0.5 }) }),
      /no run there \(no spec\.json\); npm run exp trains it first \(experiment base\)/,
    )
    const unfinished = tmp()
    cpSync(teacherDir, unfinished, { recursive: true })
    rmSync(join(unfinished, "summary.json"))
    await refused(student({ steps: 2, objective: distill({ teacher: runAt(unfinished), temperature: 2, alpha: 0.5 }) }), /teacher .*: the run is unfinished \(no summary\.json\); finish it first$/)
    // One its experiment makes is not resumed behind the user's back (it may be training elsewhere): npm run exp refuses it before anything trains.
    const made = student({ steps: 2, objective: distill({ teacher: { run: unfinished, experiment: "base" }, temperature: 2, alpha: 0.5 }) })
    await refused(made, /teacher .*: the run is unfinished \(no summary\.json\); finish it first with npm run exp base$/)
    const sources = await Effect.runPromiseExit(trainSources([made], options(tmp())).pipe(Effect.provide(Layer.merge(NodeServices.layer, quiet))))
    expect(errorOf(sources)).toBe(`base (seed 1): teacher ${unfinished}: the run is unfinished (no summary.json) and no process is training it (it failed or was interrupted); finish it first with npm run exp base`)
  })

  it("a teacher with another tokenizer, naming both files", async () => {
    const data = syntheticData()
    const other: RunData = { ...data, tokenizer: { ...data.tokenizer, json: () => JSON.stringify({ alphabet: "other" }), path: "/cache/tokenizer-other.json" } }
    await refused(student({ steps: 2, objective: kd() }), /its tokenizer .*\/tokenizer\.json \(characters \(test\)\) is not this run's \/cache\/tokenizer-other\.json \(characters \(test\)\); both must use one tokenizer/, other)
  })

  it("hidden-state blocks that do not exist, on either side", async () => {
    await refused(student({ steps: 2, objective: kd({ hidden: { pairs: [[2, 0]] } }) }), /at \["objective","hidden","pairs",0,0\]: student block 2 does not exist; the student has 2 blocks \(0–1\)/)
    await refused(student({ steps: 2, objective: kd({ hidden: { pairs: [[0, 3]] } }) }), /at \["objective","hidden","pairs",0,1\]: teacher block 3 does not exist; the teacher \(.*\) has 3 blocks \(0–2\)/)
  })

  it("hidden-state matching with a depth policy, on either side, naming the objective's field", async () => {
    await refused(
      student({ steps: 2, policy: earlyExit({ threshold: 0.5 }), objective: kd({ hidden: { pairs: [[0, 0]] } }) }),
      /^at \["objective","hidden"\]: hidden-state matching reads each block's output, which the student's early-exit policy does not give; distil the logits only$/,
    )
    const teacher = tmp()
    const t = teacherRun()
    await ok({ ...t, training: { ...t.training, budget: { steps: 1 } }, model: { ...t.model, layers: depth(3, gelu, layerDrop({ rate: 0.2 })) } }, teacher)
    const hidden = distill({ teacher: runAt(teacher), temperature: 2, alpha: 0.5, hidden: { pairs: [[0, 0]] } })
    await refused(student({ steps: 2, objective: hidden }), /^at \["objective","hidden"\]: hidden-state matching reads each block's output, which the teacher's layer-drop policy \(.*\) does not give; distil the logits only$/)
  })

  it("a warm start whose blocks or shapes do not fit", async () => {
    const base = tinyRun({ steps: 1 })
    await refused({ ...base, init: fromRun(runAt(teacherDir), { blocks: [0, 5] }) }, /at \["init","blocks"\]: source blocks 5 do not exist/)
    await refused({ ...base, model: { ...base.model, layers: stack([block({ attention: attention("full", { heads: 2 }), ffn: ffn("gelu", { hidden: 8 }) })]) }, init: fromRun(runAt(teacherDir), { blocks: [1] }) }, /parameters cannot start from it:\n {2}blocks\.0\.1\.ffn\.w_in ← blocks\.1\.1\.ffn\.w_in: shape 16×64, the student's 16×8\n/)
  })

  it("a temperature ≤ 0 or α outside [0, 1] in a spec.json, before any data is read", async () => {
    const dir = tmp()
    for (const [field, value, pattern] of [
      ["temperature", 0, /invalid run spec\nat \["objective","temperature"\]: Expected a value greater than 0$/],
      ["temperature", -1, /invalid run spec\nat \["objective","temperature"\]: Expected a value greater than 0$/],
      ["alpha", 1.5, /invalid run spec\nat \["objective","alpha"\]: Expected a value between 0 and 1$/],
      ["alpha", -0.1, /invalid run spec\nat \["objective","alpha"\]: Expected a value between 0 and 1$/],
    ] as const) {
      const spec = { ...student({ steps: 2 }), objective: { ...kd(), [field]: value } }
      writeFileSync(join(dir, "spec.json"), JSON.stringify(spec))
      const exit = await Effect.runPromiseExit(loadExperiment(join(dir, "spec.json")).pipe(Effect.flatMap((l) => expandRuns(l, {}))))
      expect(errorOf(exit)).toMatch(pattern)
    }
  })
})

describeNative("distillation on the native backend", () => {
  it("trains α = 1 to the plain run's bytes through the fused kernels, and adds no more step memory than the teacher's logits", async () => {
    await tf.setBackend("native")
    try {
      const plain = tmp()
      await ok(student({ steps: 4 }), plain, syntheticData(), "native")
      const same = tmp()
      await ok(student({ steps: 4, objective: kd({ alpha: 1 }) }), same, syntheticData(), "native")
      expect(file(same, "model.safetensors").equals(file(plain, "model.safetensors"))).toBe(true)
      // A teacher the student's size, so its forward pass (one block's tensors at a time) stays
      // below the student's step; what the step adds is then the teacher's logits.
      const soft = tmp()
      await ok(student({ steps: 4, objective: distill({ teacher: runAt(plain), temperature: 2, alpha: 0.5 }) }), soft, syntheticData(), "native")
      const peak = (dir: string) => JSON.parse(readFileSync(join(dir, "summary.json"), "utf8")).stepPeakBytes as number
      // Batch 4 × 8 positions × 17 ids of float32 teacher logits, and a few per-position numbers.
      const logits = 4 * 8 * 17 * 4
      expect(peak(soft) - peak(plain)).toBeLessThanOrEqual(logits + 8 * 4 * 8 * 4)
    } finally {
      await tf.setBackend("cpu")
    }
  })
})
