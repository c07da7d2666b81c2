import { cpSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { command as depthCommand } from "../../src/cli/depth.js"
import { command as deriveCommand } from "../../src/cli/derive.js"
import { command as evalCommand } from "../../src/cli/eval.js"
import { command as expCommand } from "../../src/cli/exp.js"
import { command as generateCommand } from "../../src/cli/generate.js"
import { command as patternCommand } from "../../src/cli/pattern.js"
import { command as resultsCommand } from "../../src/cli/results.js"
import { root } from "./process.js"
import { snapshot } from "../files.js"
import { type InProcess, runInProcess, stackLine } from "./in-process.js"

/**
 * Bad input of every kind a user can give: malformed experiment files, spec.json files with
 * wrong types and huge sizes, out-of-range flags. Each is refused with one message (no stack
 * trace), the documented exit code (1 for bad input files, 2 for bad flags), and no file of the
 * run directory changes. They run through the commands' boundary in this process; the
 * process-level behaviour (exit codes, signals) is covered by spawning in the other suites.
 */
const fixture = join(root, "test/fixtures/pre-stack/gpt2")
const tmp = () => mkdtempSync(join(tmpdir(), "bad-input-"))
/** A copy of a finished run (spec.json, tokenizer.json, checkpoint/, metrics, summary). */
const runCopy = () => {
  const dir = join(tmp(), "run")
  cpSync(fixture, dir, { recursive: true })
  return dir
}

const expectRefused = (r: InProcess, code: number, message: RegExp) => {
  expect(r.code, r.stderr).toBe(code)
  expect(r.stderr).toMatch(message)
  expect(r.stderr).not.toMatch(stackLine)
  // One message: the stderr is the error and nothing else.
  expect(r.stderr.startsWith("error: "), r.stderr).toBe(true)
  expect(r.stderr.match(/error: /g)).toHaveLength(1)
}

const dsl = join(root, "dsl/index.ts")
const lib = join(root, "src/index.ts")
/** An experiment file whose `models` (and anything else) is given as source text. */
const experimentFile = (body: string): string => {
  const file = join(tmp(), "bad.ts")
  writeFileSync(
    file,
    `import { attention, block, decoder, depth, ffn, posenc } from ${JSON.stringify(dsl)}\n` +
      `import { adamw, constant, experiment, tinystories } from ${JSON.stringify(lib)}\n` +
      `const small = (o = {}) => decoder({ vocab: 512, width: 32, context: 32, layers: depth(2, block({ attention: attention("full", { heads: 2 }), ffn: ffn("gelu") })), ...o })\n` +
      `const train = { data: tinystories({ tokenizer: { bpe: 512 } }), budget: { steps: 4 }, batch: 4, optimizer: adamw({ lr: constant(1e-3) }) }\n` +
      body,
  )
  return file
}

describe("malformed experiment files", { timeout: 60_000 }, () => {
  const cases: Array<[string, string, RegExp]> = [
    ["no models", `export default experiment({ description: "", models: {}, ...train })`, /at \["models"\]: no models/],
    ["models: null", `export default experiment({ description: "", models: null as any, ...train })`, /at \["models"\]: expected a decoder spec or a record of named variants, got null/],
    ["seeds that are not a list", `export default experiment({ description: "", models: small(), ...train, seeds: "1" as any })`, /at \["seeds"\]: expected a non-empty list of integers, got "1"/],
    ["no training settings", `export default { description: "", models: small(), training: undefined, seeds: [1] }`, /at \["training"\]: expected the training settings/],
    ["a default export that is not an experiment", `export default 42`, /expected `export default experiment\(\{\.\.\.\}\)`/],
    ["a syntax error", `export default experiment({ description: "", models: small(, ...train })`, /failed to load/],
    ["a thrown string", `throw "not an Error"`, /failed to load: not an Error/],
    ["an unknown attention kind cast through as any", `export default experiment({ description: "", models: decoder({ vocab: 512, width: 32, context: 32, layers: depth(1, block({ attention: attention("nope" as any, { heads: 2 }), ffn: ffn("gelu") })) }), ...train })`, /unknown attention kind "nope"; expected one of full, sparse-strided, sparse-fixed, sliding-window, longformer, linformer, linformer-causal/],
    ["an unknown activation cast through as any", `export default experiment({ description: "", models: small({ layers: depth(1, block({ attention: attention("full", { heads: 2 }), ffn: ffn("nope" as any) })) }), ...train })`, /unknown activation kind "nope"; expected one of relu, gelu/],
    ["an unknown position scheme cast through as any", `export default experiment({ description: "", models: small({ posenc: posenc("nope" as any) }), ...train })`, /unknown posenc kind "nope"; expected one of none, learned/],
    ["heads that do not divide the width", `export default experiment({ description: "", models: small({ layers: depth(1, block({ attention: attention("full", { heads: 3 }), ffn: ffn("gelu") })) }), ...train })`, /heads"\]: 3 does not divide width 32/],
    ["width 10⁹", `export default experiment({ description: "", models: small({ width: 1e9 }), ...train })`, /would hold .* values in one tensor|training needs about/],
    ["depth 10⁶", `export default experiment({ description: "", models: small({ layers: depth(1e6, block({ attention: attention("full", { heads: 2 }), ffn: ffn("gelu") })) }), ...train })`, /training needs about .*\n.*parameters/],
    ["an FFN multiple of 10⁶", `export default experiment({ description: "", models: small({ layers: depth(2, block({ attention: attention("full", { heads: 2 }), ffn: ffn("gelu", { mult: 1e6 }) })) }), ...train })`, /would hold|training needs about/],
    ["a batch of 10⁸", `export default experiment({ description: "", models: small(), ...train, batch: 1e8 })`, /would hold|training needs about/],
    ["a context of 10⁶", `export default experiment({ description: "", models: small({ context: 1e6 }), ...train })`, /would hold|training needs about/],
    ["an evaluation length of 10⁸", `export default experiment({ description: "", models: small({ posenc: posenc("rope") }), ...train, eval: { lengths: [1e8] } })`, /would hold|training needs about/],
  ]
  it.each(cases)("%s", async (_name, body, message) => {
    const out = runCopy()
    const before = snapshot(out)
    const r = await runInProcess(expCommand, [experimentFile(body), "--out", out])
    expectRefused(r, 1, message)
    expect(snapshot(out)).toEqual(before)
  })

  it("an unexpected exception says what failed, where, and what to do, without a stack", async () => {
    const out = runCopy()
    const before = snapshot(out)
    const file = experimentFile(`export default { description: "", get models(): never { throw new TypeError("models are not ready") }, training: train, seeds: [1] }`)
    const r = await runInProcess(expCommand, [file, "--out", out])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain("error: unexpected failure: TypeError: models are not ready")
    expect(r.stderr).toContain(`in experiment ${file}`)
    expect(r.stderr).toMatch(/hint: .*--debug/)
    expect(r.stderr).not.toMatch(stackLine)
    expect(snapshot(out)).toEqual(before)
  })
})

/** A path into a JSON value, and the value to put there. */
type Mutation = readonly [ReadonlyArray<string | number>, unknown]
const mutate = (json: any, [path, value]: Mutation): any => {
  const copy = structuredClone(json)
  let at = copy
  for (const key of path.slice(0, -1)) at = at[key]
  at[path[path.length - 1]!] = value
  return copy
}
const attentionPath = ["model", "layers", "block", "layers", 0, "body", 1]
const ffnPath = ["model", "layers", "block", "layers", 1, "body", 1]

const wrongTypes: Mutation[] = [
  [["format"], 2],
  [["seed"], "1"],
  [["model", "vocab"], 1.5],
  [["model", "width"], "32"],
  [["model", "context"], -32],
  [["model", "tied"], "yes"],
  [["model", "dropout"], 2],
  [["model", "posenc", "kind"], 7],
  [["model", "layers", "n"], "2"],
  [["model", "layers", "block", "layers"], {}],
  [[...attentionPath, "heads"], null],
  [[...attentionPath, "kind"], "nope"],
  [[...ffnPath, "mult"], "4"],
  [[...ffnPath, "activation", "kind"], "nope"],
  [["training", "batch"], "4"],
  [["training", "budget"], { steps: -1 }],
  [["training", "optimizer", "lr", "peak"], "fast"],
  [["training", "eval", "lengths"], ["x"]],
]
/** Every size field, far beyond any machine. */
const hugeSizes: Mutation[] = [
  [["model", "vocab"], 1e9],
  [["model", "width"], 1e9],
  [["model", "context"], 1e9],
  [["model", "layers", "n"], 1e6],
  [[...ffnPath, "mult"], 1e6],
  [["training", "batch"], 1e9],
]
const label = ([path, value]: Mutation) => `${path.join(".")} = ${JSON.stringify(value)}`

describe("spec.json with wrong types and huge sizes", { timeout: 60_000 }, () => {
  const spec = JSON.parse(readFileSync(join(fixture, "spec.json"), "utf8"))

  it.each(wrongTypes.map((m) => [label(m), m] as const))("npm run exp <spec.json> with %s", async (_name, m) => {
    const out = runCopy()
    const file = join(tmp(), "spec.json")
    writeFileSync(file, JSON.stringify(mutate(spec, m)))
    const before = snapshot(out)
    const r = await runInProcess(expCommand, [file, "--out", out])
    expectRefused(r, 1, new RegExp(`invalid run spec\\n(.|\\n)*at \\[${m[0].map((k) => JSON.stringify(k).replace(/[[\]]/g, "\\$&")).join(",")}`))
    expect(snapshot(out)).toEqual(before)
  })

  it.each(hugeSizes.map((m) => [label(m), m] as const))("npm run exp <spec.json> with %s", async (_name, m) => {
    const out = runCopy()
    const file = join(tmp(), "spec.json")
    writeFileSync(file, JSON.stringify(mutate(spec, m)))
    const before = snapshot(out)
    // --fresh too: a good run's spec.json is not replaced by one that cannot train.
    const r = await runInProcess(expCommand, [file, "--out", out, "--fresh"])
    expectRefused(r, 1, /would hold .* values in one tensor|training needs about .*, more than the/)
    expect(r.stderr).toMatch(/parameters: .* of weights, .* of AdamW moments, .* of gradients/)
    expect(snapshot(out)).toEqual(before)
  })

  // The run directory's own spec.json replaced: eval and generate refuse rather than evaluate a
  // checkpoint against a spec it was not trained from.
  it.each([...wrongTypes, ...hugeSizes].map((m) => [label(m), m] as const))("npm run eval and generate on a run whose spec.json has %s", async (_name, m) => {
    const out = runCopy()
    writeFileSync(join(out, "spec.json"), JSON.stringify(mutate(spec, m)))
    const before = snapshot(out)
    for (const [command, args] of [
      [evalCommand, [out, "--tokens", "64"]],
      [generateCommand, [out, "--tokens", "4"]],
    ] as const) {
      const r = await runInProcess(command, [...args])
      expectRefused(r, 1, /invalid run spec|the checkpoint was trained from a different spec/)
    }
    expect(snapshot(out)).toEqual(before)
  })
})

describe("flags out of range", { timeout: 60_000 }, () => {
  const cases: Array<[string, Parameters<typeof runInProcess>[0], (out: string) => string[], RegExp]> = [
    ["exp --steps 0", expCommand, (out) => ["smoke", "--steps", "0", "--out", out], /--steps: "0"\. Expected: an integer ≥ 1/],
    ["exp --steps -3", expCommand, (out) => ["smoke", "--steps", "-3", "--out", out], /--steps: "-3"\. Expected: an integer ≥ 1/],
    ["exp --steps 2.5", expCommand, (out) => ["smoke", "--steps", "2.5", "--out", out], /--steps: "2\.5"\. Expected: an integer ≥ 1/],
    ["exp --tokens -1", expCommand, (out) => ["smoke", "--tokens", "-1", "--out", out], /--tokens: "-1"\. Expected: an integer ≥ 1/],
    ["exp --seed -1", expCommand, (out) => ["smoke", "--seed", "-1", "--out", out], /--seed: "-1"\. Expected: an integer in \[0, 4294967295\]/],
    ["exp --seed 2^32", expCommand, (out) => ["smoke", "--seed", "4294967296", "--out", out], /--seed: "4294967296"\. Expected: an integer in \[0, 4294967295\]/],
    ["exp --checkpoint-every 0", expCommand, (out) => ["smoke", "--checkpoint-every", "0", "--out", out], /--checkpoint-every: "0"\. Expected: an integer ≥ 1/],
    ["exp --max-memory lots", expCommand, (out) => ["smoke", "--max-memory", "lots", "--out", out], /--max-memory must be a size such as 512M, 8G or 1\.5GiB/],
    ["exp --bogus", expCommand, (out) => ["smoke", "--bogus", "--out", out], /Unrecognized flag: --bogus/],
    ["eval --tokens 0", evalCommand, (out) => [out, "--tokens", "0"], /--tokens: "0"\. Expected: an integer ≥ 1/],
    ["eval --tokens -5", evalCommand, (out) => [out, "--tokens", "-5"], /--tokens: "-5"\. Expected: an integer ≥ 1/],
    ["generate --tokens -5", generateCommand, (out) => [out, "--tokens", "-5"], /--tokens: "-5"\. Expected: an integer in \[1, 1000000\]/],
    ["generate --top-k -1", generateCommand, (out) => [out, "--top-k", "-1"], /--top-k: "-1"\. Expected: an integer ≥ 0/],
    ["generate --top-p 0", generateCommand, (out) => [out, "--top-p", "0"], /--top-p: "0"\. Expected: a number in \(0, 1\]/],
    ["generate --top-p 1.5", generateCommand, (out) => [out, "--top-p", "1.5"], /--top-p: "1\.5"\. Expected: a number in \(0, 1\]/],
    ["generate --temperature -1", generateCommand, (out) => [out, "--temperature", "-1"], /--temperature: "-1"\. Expected: a number ≥ 0/],
    ["generate --temperature NaN", generateCommand, (out) => [out, "--temperature", "NaN"], /--temperature: "NaN"\. Expected: a number ≥ 0/],
    ["generate --seed 1.5", generateCommand, (out) => [out, "--seed", "1.5"], /--seed: "1\.5"\. Expected: an integer in \[0, 4294967295\]/],
    ["generate --prompt ''", generateCommand, (out) => [out, "--prompt", ""], /--prompt is empty/],
    ["pattern --context 0", patternCommand, () => ["full", "--context", "0"], /--context: "0"\. Expected: an integer in \[1, 4096\]/],
    ["pattern --head -1", patternCommand, () => ["full", "--head", "-1"], /--head: "-1"\. Expected: an integer ≥ 0/],
    ["pattern --head 4 of 4 heads", patternCommand, () => ["full", "--head", "4"], /--head 4 is not one of the 4 heads \(0 to 3\)/],
    ["results without a target", resultsCommand, () => [], /give an experiment name or a directory of runs, or --all for every run in the ledger/],
    ...["0/4", "5/4", "1/0", "a/b", "1/4/2", "-1/2"].map((shard): (typeof cases)[number] => [
      `exp --shard ${shard}`,
      expCommand,
      (out) => ["smoke", "--shard", shard, "--out", out],
      new RegExp(`--shard: "${shard}"\\. Expected: i/n with 1 ≤ i ≤ n`),
    ]),
    ["exp --variant nope", expCommand, (out) => ["smoke", "--variant", "nope", "--out", out], /--variant nope: .*smoke\.ts has no such variant; expected one of base/],
    ["exp --backend foo", expCommand, (out) => ["smoke", "--backend", "foo", "--out", out], /--backend: "foo"\. Expected: "native" \| "cpu" \| "tensorflow"/],
    ["eval --backend foo", evalCommand, (out) => [out, "--backend", "foo"], /--backend: "foo"\. Expected: "native" \| "cpu" \| "tensorflow"/],
    ...["-1", "", "0,0", "1,0", "0,x"].map((keep): (typeof cases)[number] => [
      `derive --keep-blocks ${JSON.stringify(keep)}`,
      deriveCommand,
      (out) => [out, "--out", join(tmp(), "derived"), "--keep-blocks", keep],
      /--keep-blocks(: ".*"\.|\.) Expected: "every-other" or increasing block indices like 0,2,4/,
    ]),
    ["derive with --keep-blocks and --threshold", deriveCommand, (out) => [out, "--out", join(tmp(), "derived"), "--keep-blocks", "0", "--threshold", "0.5"], /give either --keep-blocks, or --threshold and\/or --measure, not both/],
    ["derive with neither", deriveCommand, (out) => [out, "--out", join(tmp(), "derived")], /give either --keep-blocks, or --threshold and\/or --measure, not both/],
    ...["2", "0.5,NaN", "", "0.5,0.5", "1,,0.5"].map((thresholds): (typeof cases)[number] => [
      `depth --thresholds ${JSON.stringify(thresholds)}`,
      depthCommand,
      (out) => [out, "--thresholds", thresholds],
      /--thresholds(: ".*"\.|\.) Expected: distinct numbers in \[-1, 1\], comma-separated/,
    ]),
  ]
  it.each(cases)("%s", async (_name, command, args, message) => {
    const out = runCopy()
    const before = snapshot(out)
    const r = await runInProcess(command, args(out))
    expectRefused(r, 2, message)
    expect(r.stdout).toMatch(/^usage: \S+ \[flags\]/)
    expect(snapshot(out)).toEqual(before)
  })
})

describe("inputs that used to fail silently", { timeout: 60_000 }, () => {
  it("eval with a --data file holding only <|endoftext|> lines", async () => {
    const out = runCopy()
    const data = join(tmp(), "empty.txt")
    writeFileSync(data, "<|endoftext|>\n<|endoftext|>\n")
    const before = snapshot(out)
    const r = await runInProcess(evalCommand, [out, "--data", data])
    expectRefused(r, 1, new RegExp(`${data}: no story text to evaluate on \\(0 stories\\)`))
    expect(snapshot(out)).toEqual(before)
  })
})
