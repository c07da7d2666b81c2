import { NodeServices } from "@effect/platform-node"
import { Effect } from "effect"
import { appendLedger } from "../../src/train/ledger.js"
import { writerRecord } from "./ledger-records.js"

/**
 * A process that appends `count` ledger records to `runsFolder` as fast as it can, the
 * variant naming the writer and the seed counting up; it prints each seed once its record
 * is in place. Tests run two at once, or kill one mid-way.
 */
const [runsFolder, writer, count] = process.argv.slice(2) as [string, string, string]
const program = Effect.gen(function* () {
  for (let seed = 1; seed <= Number(count); seed++) {
    yield* appendLedger(runsFolder, writerRecord(writer, seed))
    process.stdout.write(`${seed}\n`)
  }
})
Effect.runPromise(program.pipe(Effect.provide(NodeServices.layer))).catch((e) => {
  console.error(e)
  process.exit(1)
})
