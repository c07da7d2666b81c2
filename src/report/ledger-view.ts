import { Effect } from "effect"
import { formatCount } from "../../dsl/print.js"
import { currentDataHash } from "../data/prepare.js"
import { evalTextOf } from "../experiment/define.js"
import type { LedgerRecord } from "../train/ledger.js"
import { codeChangedSince } from "../io/code-version.js"
import { esc, page, sortableTable } from "./html.js"

/**
 * The ledger as a table: every finished run, with what has changed since it ran. Code has
 * changed when the files that shape training differ between the run's commit and the
 * working tree now, or when the run itself had uncommitted changes (its code cannot be
 * recovered); data has changed when the TinyStories files found now hash differently.
 */
export interface Now {
  /** By commit: whether the code paths changed since (undefined: git cannot tell). */
  readonly codeChanged: ReadonlyMap<string, boolean | undefined>
  /** By `extra` flag: the data hash a run would record now (undefined: no data here). */
  readonly dataHash: ReadonlyMap<boolean, string | undefined>
}

export const now = (records: ReadonlyArray<LedgerRecord>): Effect.Effect<Now> =>
  Effect.gen(function* () {
    const commits = [...new Set(records.flatMap((r) => (r.code ? [r.code.commit] : [])))]
    const codeChanged = new Map<string, boolean | undefined>()
    for (const c of commits) codeChanged.set(c, yield* codeChangedSince(c))
    const dataHash = new Map<boolean, string | undefined>()
    for (const extra of new Set(records.map((r) => r.data.extra))) dataHash.set(extra, yield* currentDataHash({ extra }).pipe(Effect.orElseSucceed(() => undefined)))
    return { codeChanged, dataHash }
  })

/** What has changed since the run, in words; empty when nothing has (or nothing can be known). */
export const changesSince = (r: LedgerRecord, n: Now): string[] => {
  const out: string[] = []
  if (r.code === undefined) out.push("code unknown")
  else if (r.code.dirty) out.push("uncommitted code")
  else {
    const changed = n.codeChanged.get(r.code.commit)
    if (changed === true) out.push("code changed")
    else if (changed === undefined) out.push("commit unknown here")
  }
  const hash = n.dataHash.get(r.data.extra)
  if (hash !== undefined && hash !== r.data.hash) out.push("data changed")
  return out
}

const minutes = (s: number) => (s >= 3600 ? `${(s / 3600).toFixed(1)} h` : s >= 60 ? `${(s / 60).toFixed(1)} min` : `${s.toFixed(0)} s`)

export const ledgerHeader = ["finished", "experiment", "variant", "seed", "tokens", "val loss", "val bpb", "commit", "backend", "wall time", "changed since"]

/** One row per record, oldest first; `experiments` (when non-empty) keeps only those. */
export const ledgerRows = (records: ReadonlyArray<LedgerRecord>, n: Now, experiments: ReadonlyArray<string> = []): string[][] =>
  records
    .filter((r) => experiments.length === 0 || experiments.includes(r.experiment))
    .map((r) => [
      r.finishedAt.slice(0, 16).replace("T", " "),
      r.experiment,
      r.variant,
      String(r.seed),
      formatCount(r.results.tokensTrained),
      r.results.valLoss.toFixed(4),
      r.results.valBpb.toFixed(4) + (r.data.tune === undefined ? "" : ` on ${evalTextOf(r.data)}`),
      r.code ? `${r.code.commit.slice(0, 7)}${r.code.dirty ? "+dirty" : ""}` : "n/a",
      r.backend,
      minutes(r.wallSeconds),
      changesSince(r, n).join(", "),
    ])

/** The report's index page: the ledger, filterable by experiment, changes since each run marked. */
export const ledgerPage = (records: ReadonlyArray<LedgerRecord>, n: Now, o: { readonly folder: string; readonly unreadable: ReadonlyArray<string>; readonly generatedAt: Date }): string => {
  const rows = ledgerRows(records, n)
  const experiments = [...new Set(records.map((r) => r.experiment))].sort()
  const stale = rows.filter((r) => r.at(-1) !== "").length
  const body = `<h1>every finished run</h1>
<p class="note">${records.length} runs recorded in ${esc(o.folder)}; ${stale} ran on code or data that has changed since. Generated ${esc(o.generatedAt.toISOString().replace("T", " ").slice(0, 19))} UTC.</p>
${o.unreadable.map((u) => `<p class="note">skipped ${esc(u)}</p>`).join("")}
<div class="controls"><label>experiment <select id="experiment-filter"><option value="">all</option>${experiments.map((e) => `<option value="${esc(e)}">${esc(e)}</option>`).join("")}</select></label></div>
${sortableTable(ledgerHeader, rows, { id: "ledger", rowAttrs: (i) => `data-experiment="${esc(records[i]!.experiment)}"`, cellClass: (col) => (col === ledgerHeader.length - 1 ? "mark" : "") })}`
  return page({ title: "runs ledger", body })
}
