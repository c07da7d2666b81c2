import { createHash } from "node:crypto"

/** JSON with object keys sorted at every level, so field order never changes the text. */
export const canonicalJson = (value: unknown): string =>
  JSON.stringify(value, (_key, v: unknown) =>
    typeof v === "object" && v !== null && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  )

/** Stable identity of a spec (or any plain data): sha256 of its canonical JSON, 16 hex digits. */
export const hashSpec = (value: unknown): string => createHash("sha256").update(canonicalJson(value)).digest("hex").slice(0, 16)
