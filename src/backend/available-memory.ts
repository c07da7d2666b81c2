import { readFileSync } from "node:fs"
import { freemem } from "node:os"

/**
 * Memory a new run can use: the kernel's MemAvailable (free memory plus reclaimable caches,
 * unlike os.freemem), lowered to what is left under the process's cgroup limit (a container's
 * memory limit, v2 or v1). Falls back to os.freemem() where /proc is missing.
 */
export interface AvailableMemory {
  readonly bytes: number
  readonly source: string
}

const read = (file: string): string | undefined => {
  try {
    return readFileSync(file, "utf8")
  } catch {
    return undefined
  }
}

const number = (text: string | undefined): number | undefined => {
  const n = text === undefined ? Number.NaN : Number(text.trim())
  return Number.isFinite(n) ? n : undefined
}

/** The kernel's estimate of memory available without swapping, in bytes. */
const memAvailable = (): number | undefined => {
  const kb = /^MemAvailable:\s+(\d+) kB$/m.exec(read("/proc/meminfo") ?? "")?.[1]
  return kb === undefined ? undefined : Number(kb) * 1024
}

/** Limit minus usage of the process's memory cgroup; page cache it can reclaim counts as free. */
const cgroupRoom = (): number | undefined => {
  const lines = (read("/proc/self/cgroup") ?? "").split("\n")
  const v2 = lines.find((l) => l.startsWith("0::"))?.slice(3)
  const v1 = lines.find((l) => /^\d+:([^:]*,)?memory(,[^:]*)?:/.test(l))?.replace(/^[^:]*:[^:]*:/, "")
  const candidates = [
    ...(v2 !== undefined ? [{ dir: `/sys/fs/cgroup${v2 === "/" ? "" : v2}`, limit: "memory.max", usage: "memory.current", cache: "inactive_file" }] : []),
    ...(v1 !== undefined ? [{ dir: `/sys/fs/cgroup/memory${v1 === "/" ? "" : v1}`, limit: "memory.limit_in_bytes", usage: "memory.usage_in_bytes", cache: "total_inactive_file" }] : []),
    { dir: "/sys/fs/cgroup/memory", limit: "memory.limit_in_bytes", usage: "memory.usage_in_bytes", cache: "total_inactive_file" },
  ]
  for (const c of candidates) {
    const limit = number(read(`${c.dir}/${c.limit}`))
    const usage = number(read(`${c.dir}/${c.usage}`))
    if (limit === undefined || usage === undefined) continue
    // Unlimited reads as "max" (v2) or a number near 2⁶³ (v1).
    if (limit >= 2 ** 60) return undefined
    const cache = Number(new RegExp(`^${c.cache} (\\d+)$`, "m").exec(read(`${c.dir}/memory.stat`) ?? "")?.[1] ?? 0)
    return Math.max(0, limit - usage + cache)
  }
  return undefined
}

export const availableMemory = (): AvailableMemory => {
  const system = memAvailable()
  const cgroup = cgroupRoom()
  if (cgroup !== undefined && (system === undefined || cgroup < system)) return { bytes: cgroup, source: "memory left under this container's (cgroup) limit" }
  if (system !== undefined) return { bytes: system, source: "available memory (MemAvailable in /proc/meminfo)" }
  return { bytes: freemem(), source: "free memory" }
}
