import { readFileSync } from "node:fs"

/**
 * Calls `onGone` once when this process's parent ends. `npm run` forwards SIGINT and SIGTERM
 * but not SIGHUP, and a parent killed outright forwards nothing; a trainer left behind would
 * keep writing its run directory unattended. Node's `process.ppid` is read once at start-up,
 * so the live parent comes from /proc on Linux (it changes the moment the parent exits, even
 * before it is reaped) and from probing the original parent elsewhere.
 */
const currentParent = (): number | undefined => {
  try {
    const stat = readFileSync("/proc/self/stat", "utf8")
    // Fields after the parenthesised command name: state, ppid, ...
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1])
  } catch {
    return undefined
  }
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

export const watchParent = (onGone: () => void, everyMs = 500): (() => void) => {
  const parent = process.ppid
  const timer = setInterval(() => {
    const now = currentParent()
    if (now !== undefined ? now !== parent : !alive(parent)) {
      clearInterval(timer)
      onGone()
    }
  }, everyMs)
  timer.unref()
  return () => clearInterval(timer)
}
