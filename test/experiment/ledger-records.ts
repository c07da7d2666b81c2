import type { Summary } from "../../src/experiment/summary.js"
import { type LedgerRecord, ledgerRecord } from "../../src/train/ledger.js"
import { tinyRun } from "../train/fixtures.js"

/** The ledger record a test's writer `writer` appends for `seed`: the variant names the writer, valBpb is seed / 2. */
export const writerRecord = (writer: string, seed: number): LedgerRecord => {
  const run = { ...tinyRun({ steps: 1 }), variant: writer }
  const summary: Summary = {
    experiment: "ledger-test", variant: writer, seed, specHash: "h", valLoss: seed, valBpb: seed / 2, valTokens: 1, lengths: {}, trainLoss: 1,
    params: { total: 3, nonEmbedding: 2, embedding: 1 }, flopsPerToken: { forward: 1, training: 3 }, tokenizer: "t", tokenizerHash: "th",
    tokenBudget: 1, tokensTrained: 1, steps: 1, wallSeconds: 1, trainSeconds: 1, tokensPerSecond: 1, backend: "cpu",
    // A long field, so a write spends time in flight.
    backendDetail: "x".repeat(64_000), machine: "test", sample: "",
  }
  return ledgerRecord(run, summary, { dir: `${writer}/seed${seed}`, dataHash: "d", code: { commit: "c", dirty: false }, finishedAt: new Date() })
}
