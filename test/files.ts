import { createHash } from "node:crypto"
import { readdirSync, readFileSync, statSync } from "node:fs"
import { join } from "node:path"

/** Every file under `dir`, relative path → sha256: equal snapshots mean untouched files (a refused command, a teacher or source only read). */
export const snapshot = (dir: string): Record<string, string> => {
  const out: Record<string, string> = {}
  const walk = (d: string, rel: string) => {
    for (const name of readdirSync(d).sort()) {
      const full = join(d, name)
      if (statSync(full).isDirectory()) walk(full, `${rel}${name}/`)
      else out[`${rel}${name}`] = createHash("sha256").update(readFileSync(full)).digest("hex")
    }
  }
  walk(dir, "")
  return out
}
