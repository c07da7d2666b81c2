import { NodeServices } from "@effect/platform-node"
import { Effect } from "effect"
import { appendLedger, ledgerRecord } from "../../src/train/ledger.js"
import type { Summary } from "../../src/experiment/summary.js"
import { tinyRun } from "../train/fixtures.js"

/**
 * A process that appends `count` ledger records to `runsFolder` as fast as it can, the
 * variant naming the writer and the seed counting up; it prints each seed once its record
 * is in place. Tests run two at once, or kill one mid-way.
 */
const [runsFolder, writer, count] = process.argv.slice(2) as [string, string, string]
const run = { ...tinyRun({ steps: 1 }), variant: writer }
const summary = (seed: number): Summary => ({
  experiment: "ledger-test", variant: writer, seed, specHash: "h", valLoss: seed, valBpb: seed / 2, valTokens: 1, lengths: {}, trainLoss: 1,
  params: { total: 3, nonEmbedding: 2, embedding: 1 }, flopsPerToken: { forward: 1, training: 3 }, tokenizer: "t", tokenizerHash: "th",
  tokenBudget: 1, tokensTrained: 1, steps: 1, wallSeconds: 1, trainSeconds: 1, tokensPerSecond: 1, backend: "cpu",
  // A long field, so a write spends time in flight.
  backendDetail: "x".repeat(64_000), machine: "test", sample: "",
})
const program = Effect.gen(function* () {
  for (let seed = 1; seed <= Number(count); seed++) {
    yield* appendLedger(runsFolder, ledgerRecord(run, summary(seed), { dir: `${writer}/seed${seed}`, dataHash: "d", code: { commit: "c", dirty: false }, finishedAt: new Date() }))
    process.stdout.write(`${seed}\n`)
  }
})
Effect.runPromise(program.pipe(Effect.provide(NodeServices.layer))).catch((e) => {
  console.error(e)
  process.exit(1)
})
