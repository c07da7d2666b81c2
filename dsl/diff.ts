/** One difference between two specs: where, and the values on each side (undefined = absent). */
export interface Change {
  readonly path: ReadonlyArray<string | number>
  readonly before: unknown
  readonly after: unknown
}

const isObject = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null

/**
 * What changed between two specs, at the deepest level where they differ. When a node's
 * `kind` or `op` changes, the whole node is reported, since its other fields then mean
 * different things.
 */
export const diffSpecs = (a: unknown, b: unknown, path: ReadonlyArray<string | number> = []): Change[] => {
  if (!isObject(a) || !isObject(b) || Array.isArray(a) !== Array.isArray(b)) {
    return Object.is(a, b) ? [] : [{ path, before: a, after: b }]
  }
  if (!Array.isArray(a) && (a["kind"] !== b["kind"] || a["op"] !== b["op"])) return [{ path, before: a, after: b }]
  if (Array.isArray(a) && Array.isArray(b)) {
    return Array.from({ length: Math.max(a.length, b.length) }, (_, i) => diffSpecs(a[i], b[i], [...path, i])).flat()
  }
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()
  return keys.flatMap((k) => diffSpecs(a[k], b[k], [...path, k]))
}

const show = (v: unknown): string => (v === undefined ? "(absent)" : JSON.stringify(v))

export const formatDiff = (changes: ReadonlyArray<Change>): string =>
  changes.length === 0
    ? "(no changes)"
    : changes.map((c) => `${c.path.map((p) => (typeof p === "number" ? `[${p}]` : `.${p}`)).join("").replace(/^\./, "")}: ${show(c.before)} → ${show(c.after)}`).join("\n")
